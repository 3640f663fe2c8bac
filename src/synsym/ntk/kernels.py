"""The NNGP / NTK kernels of a whole split, one job per kernel family: blocks of image pairs
through an engine (the fast one, synsym.ntk.engine, or the neural-tangents reference), the
train-train blocks for the upper triangle only, every conv-family readout from one pass.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from synsym.core.architectures import FAMILY_MEMBERS, get

KINDS = ("nngp", "ntk")
# Bytes of live float64 intermediates per pixel-pair entry of a block (measured
# loosely: nngp, ntk, their shifted sums and the arc-cosine temporaries).
BYTES_PER_ENTRY = 8 * 14


def kernel_key(arch_id: str) -> str:
    """Which stored kernel serves an architecture (its ArchSpec.kernel_readout: lcn -> vec)."""
    return get(arch_id).kernel_readout or arch_id


def block_size_for(family: str, image_size: int, max_memory_gb: float, block_size: int) -> int:
    """Largest block side <= block_size whose intermediates fit the memory budget."""
    pixels2 = (image_size**2) ** 2 if family == "conv" else 1
    per_pair = BYTES_PER_ENTRY * pixels2
    fit = int(math.sqrt(max_memory_gb * 2**30 / per_pair))
    if fit < 1:
        raise MemoryError(
            f"one pair of {image_size}x{image_size} images needs {per_pair / 2**30:.2f} GB for the "
            f"{family} kernel; kernels.max_memory_gb={max_memory_gb} is too small"
        )
    return max(1, min(block_size, fit))


def _blocks(n: int, b: int) -> list[tuple[int, int]]:
    return [(i, min(i + b, n)) for i in range(0, n, b)]


def _pad(x: np.ndarray, b: int) -> np.ndarray:
    """Pad a block to b rows by repeating its first image (one compiled shape)."""
    if len(x) == b:
        return x
    return np.concatenate([x, np.repeat(x[:1], b - len(x), axis=0)])


PRECISIONS = ("float64", "float32")


def block_fn_for(family: str, depth: int, image_size: int, engine: str, device: str, log: Callable[[str], None],
                 precision: str, padding: str) -> Callable:
    """The (x1, x2=None) -> {arch: (nngp, ntk)} function of one engine: ``fast`` (synsym.ntk.engine)
    or ``neural_tangents`` (the reference). ``precision`` float32 runs the fast engine's recursion
    in float32 with float64 readout sums (kernels.precision; the reference is float64 only)."""
    if precision not in PRECISIONS:
        raise ValueError(f"kernels.precision = {precision!r} is invalid; allowed: {', '.join(PRECISIONS)}")
    if engine == "fast":
        import torch

        from synsym.ntk.engine import backend, block_fn

        if family == "conv":
            log(f"[kernel {family}] engine fast ({precision}, {padding} padding): {backend(device)}")
        return block_fn(family, depth, image_size, device, getattr(torch, precision), padding)
    if engine == "neural_tangents" and precision != "float64":
        raise ValueError("kernels.precision = 'float32' needs kernels.engine = 'fast'; neural_tangents runs in float64")
    if engine == "neural_tangents":
        from synsym.ntk.reference import family_block_fn

        return family_block_fn(family, depth, image_size, padding)
    raise ValueError(f"unknown kernel engine {engine!r}; allowed: fast, neural_tangents")


# A row block of the stacked (train; val; test) x train matrix: (split, first row, end row).
RowBlock = tuple[str, int, int]
SPLITS = ("train", "val", "test")


def row_blocks(sizes: dict[str, int], b: int) -> list[RowBlock]:
    """The row blocks of every split, in order: the unit a shard is made of."""
    return [(split, i0, i1) for split in SPLITS if split in sizes for i0, i1 in _blocks(sizes[split], b)]


def block_calls(block: RowBlock, n_train: int, b: int) -> int:
    """Block evaluations of one row block: train rows only from the diagonal block on (the upper
    triangle; the rest is its mirror), val and test rows across every train column block."""
    split, i0, _ = block
    cols = -(-n_train // b)
    return cols - i0 // b if split == "train" else cols


def shard_rows(sizes: dict[str, int], b: int, shards: int) -> list[list[RowBlock]]:
    """Contiguous runs of row blocks, ``shards`` of them, with about equal numbers of block calls
    each (a shard's runtime); a function of the sizes, the block and the count alone."""
    blocks = row_blocks(sizes, b)
    if not 1 <= shards <= len(blocks):
        raise ValueError(f"kernels.shards = {shards} for {len(blocks)} row blocks of {b} images; allowed: 1 to {len(blocks)}")
    cost = [block_calls(blk, sizes["train"], b) for blk in blocks]
    total, out, cum, k = sum(cost), [[] for _ in range(shards)], 0, 0
    for i, (blk, c) in enumerate(zip(blocks, cost)):
        left = len(blocks) - i  # every later shard keeps at least one block
        if out[k] and (cum >= (k + 1) * total / shards or left <= shards - 1 - k):
            k += 1
        out[k].append(blk)
        cum += c
    return out


def evaluate_rows(
    fn: Callable, xs: dict[str, np.ndarray], rows: list[RowBlock], b: int, members: tuple[str, ...],
    put: Callable[[RowBlock, int, int, str, str, np.ndarray], None], log: Callable[[str], None], tag: str,
) -> None:
    """Every block call of the given row blocks (train rows: upper triangle only, the diagonal
    block with x2=None so its diagonal is exact); ``put(row_block, j0, j1, arch, kind, block)``
    stores each result."""
    x_train, n = xs["train"], len(xs["train"])
    total = sum(block_calls(r, n, b) for r in rows)
    done, t0 = 0, time.time()
    for blk in rows:
        split, i0, i1 = blk
        xa = xs[split]
        for j0, j1 in _blocks(n, b):
            if split == "train" and j0 < i0:
                continue
            diag = split == "train" and i0 == j0
            res = fn(_pad(xa[i0:i1], b), None if diag else _pad(x_train[j0:j1], b))
            for arch in members:
                for kind, val in zip(KINDS, res[arch]):
                    put(blk, j0, j1, arch, kind, np.asarray(val)[: i1 - i0, : j1 - j0])
            done += 1
            if done % max(1, total // 20) == 0 or done == total:
                el = time.time() - t0
                log(f"[kernel {tag}] block {done}/{total} elapsed {el:.0f}s eta {el / done * (total - done):.0f}s")


def compute_family(
    family: str,
    x_train: np.ndarray,
    others: dict[str, np.ndarray],
    depth: int,
    block_size: int,
    max_memory_gb: float,
    log: Callable[[str], None] | None,
    engine: str,
    device: str,
    precision: str,
    padding: str,
) -> dict[str, np.ndarray]:
    """All kernels of a family in memory: ``{split}_train/{arch}/{kind}`` -> float64 matrix.

    ``others`` maps a split name (``val``, ``test``) to its images. ``engine`` is ``fast``
    (:mod:`synsym.ntk.engine`, torch) or ``neural_tangents`` (the reference). The workflow's
    jobs compute the same blocks in shards (:func:`compute_shard`).
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    b = block_size_for(family, x_train.shape[1], max_memory_gb, block_size)
    fn = block_fn_for(family, depth, x_train.shape[1], engine, device, log, precision, padding)
    xs = {"train": x_train, **others}
    out = {f"{split}_train/{arch}/{kind}": np.empty((len(x), len(x_train)))
           for split, x in xs.items() for arch in FAMILY_MEMBERS[family] for kind in KINDS}

    def put(blk: RowBlock, j0: int, j1: int, arch: str, kind: str, val: np.ndarray) -> None:
        split, i0, i1 = blk
        m = out[f"{split}_train/{arch}/{kind}"]
        m[i0:i1, j0:j1] = val
        if split == "train":
            m[j0:j1, i0:i1] = val.T

    rows = [r for split in xs for r in row_blocks({split: len(xs[split])}, b)]
    evaluate_rows(fn, xs, rows, b, FAMILY_MEMBERS[family], put, log, family)
    return out


# ---------------------------------------------------------------- the sharded store
# A kernel job is one shard: a run of row blocks of the stacked (train; val; test) x train
# matrix, written as one .npy per readout and kind (rows of the shard x n_train), plus rows.json.
# Train rows hold their upper triangle only (block-wise); the reader mirrors it. No file is
# ever one giant archive: a regression reads its architecture's stripes, memory-mapped.


def compute_shard(
    family: str, xs: dict[str, np.ndarray], depth: int, block_size: int, max_memory_gb: float, shard: int, shards: int,
    out_dir: str | Path, meta: dict, log: Callable[[str], None] | None, engine: str, device: str,
    precision: str, padding: str,
) -> None:
    """Shard ``shard`` of ``shards`` of one family's kernels, written atomically to ``out_dir``
    (float64 files whatever ``precision`` the recursion ran in)."""
    from synsym.core.io import atomic_dir

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    n, size = len(xs["train"]), xs["train"].shape[1]
    b = block_size_for(family, size, max_memory_gb, block_size)
    rows = shard_rows({k: len(v) for k, v in xs.items()}, b, shards)[shard]
    fn = block_fn_for(family, depth, size, engine, device, log, precision, padding)
    offset, r = {}, 0
    for blk in rows:
        offset[blk] = r
        r += blk[2] - blk[1]
    with atomic_dir(out_dir) as tmp:
        arrays = {(a, k): np.lib.format.open_memmap(Path(tmp) / f"{a}__{k}.npy", mode="w+", dtype=np.float64, shape=(r, n))
                  for a in FAMILY_MEMBERS[family] for k in KINDS}

        def put(blk: RowBlock, j0: int, j1: int, arch: str, kind: str, val: np.ndarray) -> None:
            o = offset[blk]
            arrays[(arch, kind)][o : o + blk[2] - blk[1], j0:j1] = val

        evaluate_rows(fn, xs, rows, b, FAMILY_MEMBERS[family], put, log, f"{family} shard {shard + 1}/{shards}")
        for arr in arrays.values():
            arr.flush()
        arrays.clear()
        info = {**meta, "family": family, "shard": shard, "shards": shards, "block": b, "n_train": n,
                "rows": [list(blk) for blk in rows]}
        (Path(tmp) / "rows.json").write_text(json.dumps(info))


class Kernels(Mapping):
    """One kernel seed's matrices, read from its shard folders: ``kern["{split}_train/{arch}/{kind}"]``
    as in compute_family's output, or ``kern.matrix(name, arch, kind, m)`` for the first m training
    images only (what a regression needs, without assembling the rest). Train-train is mirrored
    from the stored upper triangle; nothing is read before it is asked for."""

    def __init__(self, shard_dirs: list[str | Path]):
        from synsym.core.io import reading

        infos = []
        for d in shard_dirs:
            with reading(Path(d) / "rows.json", "kernel shard index"):
                infos.append(json.loads((Path(d) / "rows.json").read_text()))
                infos[-1]["rows"], infos[-1]["n_train"], infos[-1]["family"]  # noqa: B018 (the keys it must have)
        if sorted(i["shard"] for i in infos) != list(range(len(infos))) or {i["shards"] for i in infos} != {len(infos)}:
            raise ValueError(f"kernel shards {', '.join(map(str, shard_dirs))}: not one complete set of shards")
        self.stripes: dict[str, list[tuple[int, int, Path, int]]] = {s: [] for s in SPLITS}
        for d, info in zip(shard_dirs, infos):
            r = 0
            for split, i0, i1 in info["rows"]:
                self.stripes[split].append((i0, i1, Path(d), r))
                r += i1 - i0
        self.n, members = infos[0]["n_train"], FAMILY_MEMBERS[infos[0]["family"]]
        self.keys_ = [f"{s}_train/{a}/{k}" for s in SPLITS if self.stripes[s] for a in members for k in KINDS]

    def __iter__(self):
        return iter(self.keys_)

    def __len__(self) -> int:
        return len(self.keys_)

    def __getitem__(self, key: str) -> np.ndarray:
        name, arch, kind = key.split("/")
        return self.matrix(name, arch, kind)

    def matrix(self, name: str, arch: str, kind: str, m: int | None = None) -> np.ndarray:
        """``{split}_train`` of one readout and kind, restricted to the first m training images
        (columns, and rows for train-train)."""
        split = name.split("_")[0]
        m = self.n if m is None else m
        stripes = sorted(self.stripes[split])
        rows = m if split == "train" else stripes[-1][1]
        out = np.empty((rows, m))
        for i0, i1, d, r in stripes:
            if i0 >= rows:
                break
            i1 = min(i1, rows)
            out[i0:i1] = _stripe(d / f"{kernel_key(arch)}__{kind}.npy", r + i1 - i0, self.n)[r : r + i1 - i0, :m]
        if split == "train":  # below the diagonal block: the mirror of the stored upper triangle
            for i0, i1, _, _ in stripes:
                if i0 >= rows:
                    break
                i1 = min(i1, rows)
                out[i0:i1, :i0] = out[:i0, i0:i1].T
                # a diagonal block as compute_family leaves it (its transpose: equal to rounding)
                out[i0:i1, i0:i1] = out[i0:i1, i0:i1].T.copy()
        return out


def _stripe(path: Path, rows: int, n: int) -> np.ndarray:
    """One shard's .npy of one readout and kind, memory-mapped: at least ``rows`` rows of n columns, or one
    line naming the file."""
    from synsym.core.io import StudyFileError, reading

    with reading(path, "kernel shard"):
        a = np.load(path, mmap_mode="r")
    if a.ndim != 2 or a.shape[0] < rows or a.shape[1] != n:
        raise StudyFileError(f"{path}: kernel shard of shape {a.shape}, its rows.json says >= {rows} x {n}; "
                             "delete the shard folder and rerun; snakemake will remake it")
    return a


def load_kernels(shard_dirs: list[str | Path]) -> Kernels:
    """The kernel of one (family, transform, seed) from its shard folders (each matrix read on demand)."""
    return Kernels(shard_dirs)
