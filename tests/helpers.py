"""Running Snakemake from tests, and the settings tests pass explicitly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# The kernel settings unit tests compute with. A job's spec carries them (synsym.core.jobspec); the package has no
# defaults for them, so a test names them too: kernel_args() for the keywords of compute_family and compute_shard.
KERNEL = {"engine": "fast", "device": "cpu", "precision": "float64", "padding": "circular"}


def kernel_args(**over) -> dict:
    """KERNEL with a silent log and the test's own choices (``padding="zero"``, ``engine=...``)."""
    return {**KERNEL, "log": lambda _: None, **over}


def snakemake(*args: str, cwd: Path | None = None, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    # `timeout -k` as well: a Snakemake stuck polling Slurm ignores SIGTERM.
    cmd = ["timeout", "-k", "10", str(timeout), SNAKEMAKE, "-s", str(ROOT / "Snakefile"), *args]
    if cwd is not None:
        cmd += ["--directory", str(cwd)]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30, cwd=cwd or ROOT, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def load_config(*presets: str) -> dict:
    """config.yaml with presets merged on top, as Snakemake merges --configfile."""
    import yaml
    from snakemake.utils import update_config

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    for name in presets:
        update_config(cfg, yaml.safe_load((ROOT / name).read_text()))
    return cfg


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run as {rule: count}."""
    counts: dict[str, int] = {}
    block = output.split("Job stats:")[1] if "Job stats:" in output else ""
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


def dry_counts(*args: str, cwd: Path | None = None) -> dict[str, int]:
    p = snakemake("-n", *args, cwd=cwd)
    return job_counts(p.stdout + p.stderr)
