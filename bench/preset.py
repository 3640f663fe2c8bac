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

from synsym.pipeline.jobs import read_benchmarks


def load(run_dir: Path) -> pd.DataFrame:
    """One row per job with a benchmark file, filed under the rule that wrote it (synsym.pipeline.jobs
    reads the paths with the rules' own patterns)."""
    rows = [{"rule": job.rule, "job": job.name, "s": s, "max_rss_mb": rss}
            for job, (s, rss) in read_benchmarks(run_dir).items()]
    return pd.DataFrame(rows, columns=["rule", "job", "s", "max_rss_mb"])


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
