"""Command line entry points, one per workflow rule: ``python -m synsym.cli CMD``.

Every failure a user can cause (bad id, bad config value, md5 mismatch, no
GPU) ends the job with one line on stderr and exit status 2, before compute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _spec(s: str) -> dict:
    return json.loads(s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="synsym")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("prepare")
    c.add_argument("--spec", type=_spec, required=True)
    c.add_argument("--out", required=True)

    c = sub.add_parser("kernel")
    c.add_argument("--spec", type=_spec, required=True)
    c.add_argument("--family", required=True)
    c.add_argument("--transform", required=True)
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--split", required=True)
    c.add_argument("--out", required=True)

    c = sub.add_parser("kernel-cell")
    c.add_argument("--spec", type=_spec, required=True)
    c.add_argument("--study", required=True)
    c.add_argument("--arch", required=True)
    c.add_argument("--transform", required=True)
    c.add_argument("--m", type=int, required=True)
    c.add_argument("--split", required=True)
    c.add_argument("--kernels", nargs="+", required=True)
    c.add_argument("--out-ntk", required=True)
    c.add_argument("--out-nngp", required=True)

    c = sub.add_parser("train")
    c.add_argument("--spec", type=_spec, required=True)
    c.add_argument("--study", required=True)
    c.add_argument("--inference", required=True)
    c.add_argument("--arch", required=True)
    c.add_argument("--transform", required=True)
    c.add_argument("--width", type=int, required=True)
    c.add_argument("--m", type=int, required=True)
    c.add_argument("--split", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--first-layer", default="gaussian")

    c = sub.add_parser("merge")
    c.add_argument("--out", required=True)
    c.add_argument("--csv")
    c.add_argument("--cells", nargs="*", default=[])

    c = sub.add_parser("figure")
    c.add_argument("--name", required=True)
    c.add_argument("--tables", nargs="+", required=True)
    c.add_argument("--out", required=True, help="the .png path; the .pdf goes beside it")

    a = p.parse_args(argv)
    from synsym import cells
    from synsym.data import DataError

    try:
        if a.cmd == "prepare":
            cells.prepare(a.spec, a.out)
        elif a.cmd == "kernel":
            cells.kernel_job(a.spec, a.family, a.transform, a.seed, a.split, a.out)
        elif a.cmd == "kernel-cell":
            cells.kernel_cell(
                a.spec, a.study, a.arch, a.transform, a.m, a.split, a.kernels, a.spec["seeds"],
                {"ntk": a.out_ntk, "nngp": a.out_nngp},
            )
        elif a.cmd == "train":
            cells.train_cell(
                a.spec, a.study, a.inference, a.arch, a.transform, a.width, a.m, a.split, a.out, a.first_layer
            )
        elif a.cmd == "merge":
            from synsym.io import merge_cells

            df = merge_cells(a.cells, a.out, a.csv)
            print(f"merged {len(a.cells)} cells, {len(df)} rows -> {a.out}", file=sys.stderr)
        elif a.cmd == "figure":
            import pandas as pd

            from synsym import figures

            tables = {Path(t).stem: pd.read_parquet(t) for t in a.tables}
            for path in figures.make(a.name, tables, Path(a.out).parent):
                print(f"wrote {path}", file=sys.stderr)
    except (ValueError, RuntimeError, DataError, MemoryError, FileNotFoundError) as e:
        print(f"synsym {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
