"""The derived tables' inputs, found by the workflow's paths: cells' predictions read back into the keys the
study's tables take (synsym.study.tables), kernel shards grouped by family and transform. One function per
derived-table command of ``synsym.cli``; each returns the table, which the command writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from synsym.core.data import Split
from synsym.core.io import read_cell, read_table, reading
from synsym.pipeline.jobs import parse_cell, parse_kernel_shard
from synsym.study import symmetry as SY
from synsym.study import tables as ST


def fits(tables: list[str]) -> pd.DataFrame:
    return ST.scaling_fits(pd.concat([read_table(t) for t in tables], ignore_index=True))


def ridges(tables: list[str], candidates: list[float]) -> pd.DataFrame:
    return ST.ridge_wins({Path(t).stem: read_table(t) for t in tables}, candidates)


def sdist(split: str, preds: list[str]) -> pd.DataFrame:
    """S-Dist along the SO(3)^d path from the sdist cells' stored predictions and acceptance."""
    got, accepted = {}, {}
    for path in preds:  # .../cells/sdist/{inference}/{arch}/{so3_path-t{t} | identity}/w{width}_m{m}.pred.npz
        w = parse_cell(path)
        tid = w["transform"]
        t = float(tid.split("-t")[1]) if "-t" in tid else None  # GAP_n, the reference: clean data
        key = (w["arch"], w["inference"], None if w["width"] == "inf" else int(w["width"]), t)
        with reading(path, "predictions file"), np.load(path) as z:
            got[key], seeds = z["pred"], z["seeds"]
        cell = read_cell(path[: -len(".pred.npz")] + ".parquet").set_index("seed")
        accepted[key] = cell.loc[seeds, "accepted"].to_numpy()
    return ST.sdist_table(got, Split.load(split).y_test, accepted)


def grid_preds(paths: list[str]) -> dict:
    """{(inference, arch, transform): (per-seed test predictions, seeds)} of grid cells' .pred.npz files."""
    preds = {}
    for path in paths:  # .../cells/grid/{inference}/{arch}/{transform}/w{width}_m{m}.pred.npz
        w = parse_cell(path)
        with reading(path, "predictions file"), np.load(path) as z:
            preds[(w["inference"], w["arch"], w["transform"])] = (z["pred"], z["seeds"])
    return preds


def finite_vs_kernel(grid: str, split: str, preds: list[str]) -> pd.DataFrame:
    return ST.finite_vs_kernel(read_table(grid), grid_preds(preds), Split.load(split).y_test)


def transform_gaps(runs: list[str], base: str) -> pd.DataFrame:
    """Runs of one split, one transform each (the synergy presets): every cell's accuracy against the base's."""
    by_transform, y_test = {}, None
    for run in map(Path, runs):
        y = Split.load(run / "data" / "split.npz").y_test
        if y_test is not None and not np.array_equal(y, y_test):
            raise ValueError(f"{run}: its test set is not the other runs'; transform-gaps compares runs of one split")
        y_test = y
        preds = grid_preds(sorted(str(p) for p in (run / "cells" / "grid").glob("*/*/*/*.pred.npz")))
        for tid in {t for _, _, t in preds}:
            by_transform[tid] = (read_table(run / "tables" / "grid.parquet"),
                                 {k: v for k, v in preds.items() if k[2] == tid})
    if base not in by_transform:
        raise ValueError(f"--base {base}: no run has it; the runs have {', '.join(sorted(by_transform))}")
    return ST.transform_gaps(by_transform, y_test, base)


def symmetry(grid: str, kernels: list[str], archs: list[str], reused: list[str], split: str | None,
             spec: Mapping | None) -> pd.DataFrame:
    """The symmetry report (study.symmetry.report) with the kernel shard folders grouped by family and transform."""
    files: dict[tuple[str, str], list[str]] = {}
    for k in kernels:
        w = parse_kernel_shard(k)
        files.setdefault((w["family"], w["transform"]), []).append(k)
    return SY.report(grid, files, archs, reused, split, spec)
