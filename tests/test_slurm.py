"""The workflow through a REAL Slurm cluster (scripts/slurm-up.sh starts one on localhost).

Runs the learning-curve part of the smoke preset (kernel, kernel-cell,
training, merge and figure jobs) with the shipped profile and a calibration of
this machine, checks that every submitted job carries its planned --time (from
sacct) and that the kernel regressions went out as one grouped job, then deletes
one cell and checks that exactly one job is submitted to rebuild it.
"""

import os
import re
import shutil
import subprocess
import time

import pytest
import yaml
from helpers import ROOT, load_config, snakemake

from synsym.pipeline import jobs as J
from synsym.pipeline import plan as P


def slurm_idle() -> bool:
    if shutil.which("sbatch") is None:
        return False
    p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return p.returncode == 0 and "idle" in p.stdout


def slurm_ready(wait_s: float) -> bool:
    """Whether the node is idle, waiting up to ``wait_s`` for it (a freshly started slurmd takes a while)."""
    end = time.time() + wait_s
    while not slurm_idle():
        if time.time() > end:
            return False
        time.sleep(5)
    return True


CI = os.environ.get("CI") == "true"
READY = slurm_ready(180 if CI else 0)
if CI and not READY:  # CI starts the cluster (scripts/test.sh): not finding it is a failure, not a skip
    pytest.fail("CI=true but no idle Slurm node within 180 s (scripts/slurm-up.sh, then `sinfo`)", pytrace=False)

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not READY, reason="no idle Slurm cluster here: run `sudo bash scripts/slurm-up.sh`"),
]


def submitted(output: str) -> int:
    return len(re.findall(r"submitted with SLURM jobid", output))


def submissions(output: str) -> list[tuple[str, str]]:
    """(Slurm job id, rule, or "regress" for a group job) of every submission, from the plugin's
    log lines: .../slurm_logs/rule_<rule>/<wildcards>/<id>.log or .../slurm_logs/group_regress_<rules>/<id>.log."""
    subs = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/([^/]+)/", output)
    return [(jid, "regress" if seg.startswith("group_regress") else seg.removeprefix("rule_")) for jid, seg in subs]


def time_limits(ids: list[str]) -> dict[str, int]:
    """Minutes of each job's time limit, as Slurm's accounting recorded it."""
    p = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,Timelimit", "-j", ",".join(ids)],
                       capture_output=True, text=True, check=True, timeout=60)
    out = {}
    for line in p.stdout.split():
        jid, lim = line.split("|")
        d, _, hms = lim.rpartition("-")
        h, m, _ = map(int, hms.split(":"))
        out[jid] = (int(d) if d else 0) * 1440 + h * 60 + m
    return out


def test_curves_through_slurm_then_rerun_one_cell(tmp_path, mini_archive):
    url, md5 = mini_archive
    cfg = load_config("presets/smoke.yaml")
    cal = tmp_path / "calibration.json"
    P.calibrate(cfg, cal, log=lambda _: None)
    # a safety factor that keeps every request (x2 on a retry) within the one node's memory
    plan = {"calibration": str(cal), "safety_factor": 4.0, "min_runtime_min": 1, "min_mem_mb": 500}
    cfg["plan"].update(plan)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"data": {"url": url, "md5": md5, "dir": str(tmp_path / "c")},
                                                        "plan": plan}))
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
    # prepare + the conv kernel in its 2 shard jobs (kernels.shards.conv in the smoke preset) + 1 group of
    # 2 NTK regressions (ntk/nngp ride along) + 3 curve cells x 3 sizes (those at n_train as grid cells);
    # merge/figure are local
    subs = submissions(out)
    assert submitted(out) == len(subs) == 1 + 2 + 1 + 9, out[-3000:]
    assert sum(r == "regress" for _, r in subs) == 1 and sum(r == "kernel" for _, r in subs) == 2
    # every single job asked Slurm for its planned time: plan.request(plan.predict(job)), per rule as multisets
    limits = time_limits([j for j, _ in subs])
    planned = {}
    wanted = {"prepare": {}, "kernel": {"family": "conv", "transform": "identity"}}
    # the finite curves at n_train are the grid's cells (trained once, by the grid's job)
    curve_files = set(J.study_paths(cfg, "curves"))
    for job in J.jobs(cfg):
        w = job.wildcards
        if job.rule == "train_cell":
            wanted_job = J.cell_path(cfg, w["study"], w["finite"], w["arch"], w["transform"], w["width"], w["m"]) \
                in curve_files
        else:
            wanted_job = job.rule in wanted and wanted[job.rule].items() <= w.items()
        if wanted_job:
            planned.setdefault(job.rule, []).append(P.request(*P.predict(job, cfg, P.load(cal)), cfg)[0])
    assert len(planned["train_cell"]) == 9 and sum("/cells/grid/" in f for f in curve_files) == 3
    got = {}
    for jid, rule in subs:
        got.setdefault(rule, []).append(limits[jid])
    regress = got.pop("regress")
    assert {r: sorted(v) for r, v in got.items()} == {r: sorted(v) for r, v in planned.items()}
    assert len(set(planned["train_cell"])) > 1 or planned["train_cell"][0] != 60  # not the fixed fallback
    assert regress[0] >= 1
    cell = tmp_path / "results/smoke/cells/curves/nn_plus/lcn/identity/w4_m30.parquet"
    cell.unlink()
    p = snakemake(*args, str(cell.relative_to(tmp_path)), target, cwd=tmp_path, timeout=600)
    assert submitted(p.stdout + p.stderr) == 1
    assert cell.exists()
