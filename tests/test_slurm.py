"""The workflow through a REAL Slurm cluster (scripts/slurm-up.sh starts one on localhost).

Runs the learning-curve part of the smoke preset (kernel, kernel-cell,
training, merge and figure jobs) with the shipped profile, then deletes one
cell and checks that exactly one job is submitted to rebuild it.
"""

import re
import shutil
import subprocess

import pytest
import yaml
from helpers import ROOT, snakemake


def slurm_idle() -> bool:
    if shutil.which("sbatch") is None:
        return False
    p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return p.returncode == 0 and "idle" in p.stdout


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not slurm_idle(), reason="no idle Slurm cluster here: run `sudo bash scripts/slurm-up.sh`"),
]


def submitted(output: str) -> int:
    return len(re.findall(r"submitted with SLURM jobid", output))


def test_curves_through_slurm_then_rerun_one_cell(tmp_path, mini_archive):
    url, md5 = mini_archive
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"data": {"url": url, "md5": md5, "dir": str(tmp_path / "c")}}))
    args = (
        "--profile", str(ROOT / "profiles/slurm"),
        "--configfile", str(ROOT / "presets/smoke.yaml"), str(tmp_path / "data.yaml"),
        "--slurm-init-seconds-before-status-checks", "2",
        "--latency-wait", "5",
    )
    target = "results/smoke/figures/fig4_learning_curves.png"
    p = snakemake(*args, target, cwd=tmp_path, timeout=600)
    out = p.stdout + p.stderr
    fig = tmp_path / "results/smoke/figures/fig4_learning_curves.png"
    assert fig.stat().st_size > 1000
    # prepare + conv kernel + 2 NTK cells (ntk/nngp ride along) + 3 curve cells x 3 sizes; merge/figure are local
    assert submitted(out) == 1 + 1 + 2 + 9, out[-3000:]
    cell = tmp_path / "results/smoke/cells/curves/nn_plus/lcn/identity/w4_m30.parquet"
    cell.unlink()
    p = snakemake(*args, str(cell.relative_to(tmp_path)), target, cwd=tmp_path, timeout=600)
    assert submitted(p.stdout + p.stderr) == 1
    assert cell.exists()
