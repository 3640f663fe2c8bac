"""Benchmark: a whole preset's cost from Snakemake's own benchmark files.

    python bench/preset.py results/default            # after `snakemake --cores all`
    python bench/preset.py results/default --wall 1830  # also print the measured wall time

Prints CPU-seconds per rule (sum of the jobs' benchmark `s`), the three most
expensive rules, and the most expensive single jobs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def load(run_dir: Path) -> pd.DataFrame:
    rows = []
    for f in sorted((run_dir / "benchmarks").rglob("*.tsv")):
        b = pd.read_csv(f, sep="\t")
        rel = f.relative_to(run_dir / "benchmarks")
        rule = "kernel" if rel.parts[0] == "kernel" else "train_cell"
        rows.append({"rule": rule, "job": str(rel.with_suffix("")), "s": float(b["s"].iloc[-1]),
                     "max_rss_mb": float(b["max_rss"].iloc[-1])})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--wall", type=float, help="measured wall-clock seconds of the whole run")
    a = ap.parse_args()
    df = load(a.run_dir)
    if a.wall:
        print(f"whole preset: {a.wall / 60:.1f} min wall clock")
    per_rule = df.groupby("rule")["s"].agg(["count", "sum", "mean", "max"]).sort_values("sum", ascending=False)
    print("seconds per rule (jobs with a benchmark: directive):")
    print(per_rule.round(1).to_string())
    print("\nmost expensive jobs:")
    print(df.sort_values("s", ascending=False).head(3).round(1).to_string(index=False))


if __name__ == "__main__":
    main()
