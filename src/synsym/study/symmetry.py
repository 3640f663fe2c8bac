"""Theorem 4.1 measured: the symmetry report, and the one check of every kernel served by another transform's job.

With ``kernels.reuse_invariant`` a transform's kernel is read from the job of the transform the theorem says it
equals (``architectures.kernel_source``). Both places that rely on such a reuse, the grid's symmetry report and
the kernel curves, check it the same way, on every run: the kernel of the first REUSE_CHECK_IMAGES images of
tau D, computed afresh, against the served kernel's same block, to the one tolerance KERNEL_TOL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from synsym.core import architectures as A
from synsym.core import transforms as T
from synsym.core.data import Split
from synsym.core.io import read_table
from synsym.ntk.kernels import KINDS, block_fn_for, kernel_key, load_kernels
from synsym.study.tables import KERNEL_TOL, kernel_invariance, symmetry_report

REUSE_CHECK_IMAGES = 64  # training images of the block on which a served kernel is checked


def reuse_check(block_fn: Callable, x_tau: np.ndarray, served: Mapping[tuple[str, str], np.ndarray], what: str,
                source: str, log: Callable[[str], None]) -> dict[tuple[str, str], float]:
    """max |K(tau x) - K_served| / max |K_served| per (arch, kind) of ``served`` (the served kernel's train-train
    block on the same images). Stops with one line (ValueError) at KERNEL_TOL or above: every cell regressed on
    that kernel would be wrong."""
    got = block_fn(x_tau)
    out = {(arch, kind): float(np.abs(np.asarray(got[kernel_key(arch)][KINDS.index(kind)]) - want).max()
                               / np.abs(want).max())
           for (arch, kind), want in served.items()}
    worst = max(out.values())
    log(f"reuse {what} <- {source}: max rel diff {worst:.1e} on {len(x_tau)} images")
    if not worst < KERNEL_TOL:
        raise ValueError(f"kernel {what}: served by {source}'s kernel (kernels.reuse_invariant) but differs from it by "
                         f"{worst:.1e} on a block; set kernels.reuse_invariant: false and rerun")
    return out


def family_block_fn(spec: Mapping, family: str, image_size: int, log: Callable[[str], None]) -> Callable:
    """The kernel function of a job's spec (its engine, device, precision and padding), for a reuse check."""
    k = spec["kernels"]
    return block_fn_for(family, spec["depth"], image_size, k["engine"], spec["device"], log, k["precision"],
                        spec["padding"])


def _served_block(files: list[str], archs: list[str], n: int) -> dict[tuple[str, str], np.ndarray]:
    served = load_kernels(files)
    return {(arch, kind): served.matrix("train_train", kernel_key(arch), kind, n) for arch in archs for kind in KINDS}


def report(grid_path: str, files: dict[tuple[str, str], list[str]], archs: list[str], reused: list[str],
           split_path: str | None, spec: Mapping | None) -> pd.DataFrame:
    """Theorem 4.1's prediction against the measurement for every (architecture, inference, transform) of the grid:
    kernels compared whole where each transform has its own job (``files``: (family, transform) -> its shard
    folders), by reuse_check where one is served (``reused``: family/transform ids; they need the split and the
    kernel spec)."""
    if reused and (split_path is None or spec is None):
        raise ValueError("symmetry report: --reused kernels need --split and --spec")
    diffs, sampled = {}, set()
    for fam in {A.get(arch).kernel_family for arch in archs}:
        if (fam, "identity") not in files:
            raise ValueError("symmetry report needs the identity transform in grid.transforms")
        base = load_kernels(files[(fam, "identity")])
        members = [arch for arch in archs if A.get(arch).kernel_family == fam]
        for (f, tid), path in files.items():
            if f != fam or tid == "identity":
                continue
            kern = load_kernels(path)
            for arch in members:
                for kind in KINDS:
                    diffs[(arch, tid, kind)] = kernel_invariance(base, kern, arch, kind)
        for tid in [r.split("/")[1] for r in reused if r.split("/")[0] == fam]:
            got = check_served(spec, split_path, fam, tid, files, members)
            diffs.update({(arch, tid, kind): d for (arch, kind), d in got.items()})
            sampled.update((arch, tid, kind) for arch, kind in got)
    return symmetry_report(read_table(grid_path), diffs, frozenset(sampled))


def check_served(spec: Mapping, split_path: str, family: str, tid: str, files: dict, archs: list[str]) -> dict:
    """The reuse check of one served grid kernel: tau's kernel on the first REUSE_CHECK_IMAGES training images
    against the stored kernel of its source transform."""
    source = A.kernel_source(family, tid)
    x = Split.load(split_path).x_train[:REUSE_CHECK_IMAGES]
    fn = family_block_fn(spec, family, x.shape[1], lambda s: print(s, flush=True))
    x_tau = T.make(tid, x.shape[1], spec["global_seed"], spec["seed"]).apply(x)
    return reuse_check(fn, x_tau, _served_block(files[(family, source)], archs, len(x)), f"{family}/{tid}", source,
                       lambda s: print(s, flush=True))
