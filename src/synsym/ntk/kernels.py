"""The NNGP / NTK kernels of a whole split, one job per kernel family: blocks of image pairs
through an engine (the fast one, synsym.ntk.engine, or the neural-tangents reference), the
train-train blocks for the upper triangle only, every conv-family readout from one pass.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import numpy as np

from synsym.core.architectures import FAMILY_MEMBERS

KINDS = ("nngp", "ntk")
# Bytes of live float64 intermediates per pixel-pair entry of a block (measured
# loosely: nngp, ntk, their shifted sums and the arc-cosine temporaries).
BYTES_PER_ENTRY = 8 * 14


def kernel_key(arch_id: str) -> str:
    """Which stored kernel serves an architecture (lcn -> vec)."""
    return "vec" if arch_id == "lcn" else arch_id


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


def compute_family(
    family: str,
    x_train: np.ndarray,
    others: dict[str, np.ndarray],
    depth: int,
    block_size: int = 32,
    max_memory_gb: float = 2.0,
    log: Callable[[str], None] | None = None,
    engine: str = "fast",
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """All kernels of a family: ``{split}/{arch}/{kind}`` -> float64 matrix.

    ``others`` maps a split name (``val``, ``test``) to its images; the
    result holds ``train_train`` and ``{split}_train`` for each. ``engine``
    is ``fast`` (:mod:`synsym.ntk.engine`, torch) or ``neural_tangents`` (the
    reference, nt's stax kernels with the shared stack).
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    image_size = x_train.shape[1]
    b = block_size_for(family, image_size, max_memory_gb, block_size)
    if engine == "fast":
        from synsym.ntk.engine import backend, block_fn

        fn = block_fn(family, depth, image_size, device)
        if family == "conv":
            log(f"[kernel {family}] engine fast: {backend(device)}")
    elif engine == "neural_tangents":
        from synsym.ntk.reference import family_block_fn

        fn = family_block_fn(family, depth, image_size)
    else:
        raise ValueError(f"unknown kernel engine {engine!r}; allowed: fast, neural_tangents")
    members = FAMILY_MEMBERS[family]
    out: dict[str, np.ndarray] = {}
    tasks = []  # (name, xa, rows, cols, symmetric)
    tasks.append(("train_train", x_train, x_train, True))
    for split, x in others.items():
        tasks.append((f"{split}_train", x, x_train, False))
    total = sum(
        len(_blocks(len(xa), b)) * (len(_blocks(len(xb), b)) + 1) // 2 if sym else len(_blocks(len(xa), b)) * len(_blocks(len(xb), b))
        for _, xa, xb, sym in tasks
    )
    done, t0 = 0, time.time()
    for name, xa, xb, sym in tasks:
        for arch in members:
            for kind in KINDS:
                out[f"{name}/{arch}/{kind}"] = np.empty((len(xa), len(xb)))
        for i0, i1 in _blocks(len(xa), b):
            for j0, j1 in _blocks(len(xb), b):
                if sym and j0 < i0:
                    continue
                diag = sym and i0 == j0
                res = fn(_pad(xa[i0:i1], b), None if diag else _pad(xb[j0:j1], b))
                for arch in members:
                    for kind, val in zip(KINDS, res[arch]):
                        blk = np.asarray(val)[: i1 - i0, : j1 - j0]
                        m = out[f"{name}/{arch}/{kind}"]
                        m[i0:i1, j0:j1] = blk
                        if sym:
                            m[j0:j1, i0:i1] = blk.T
                done += 1
                if done % max(1, total // 20) == 0 or done == total:
                    el = time.time() - t0
                    log(f"[kernel {family}] block {done}/{total} elapsed {el:.0f}s eta {el / done * (total - done):.0f}s")
    return out


def save_kernels(kern: dict[str, np.ndarray], path: str, meta: dict) -> None:
    from synsym.core.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k.replace("/", "__"): v for k, v in kern.items()}, **{f"meta__{k}": np.asarray(v) for k, v in meta.items()})


def load_kernels(path: str, arch: str | None = None) -> dict[str, np.ndarray]:
    """A kernel file's matrices; with ``arch``, only that architecture's (a regression needs one
    of the family's readouts: at paper scale the conv file holds 4 x 2 x 45k x 60k doubles, 173 GB)."""
    with np.load(path) as z:
        keep = [k for k in z.files if arch is None or f"__{kernel_key(arch)}__" in k or k.startswith("meta__")]
        return {k.replace("__", "/"): z[k] for k in keep}
