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
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, load_config, snakemake

from synsym.pipeline import calibration as C
from synsym.pipeline import cost
from synsym.pipeline import jobs as J
from synsym.pipeline import slurm as S


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
    C.calibrate(cfg, cal, log=lambda _: None)
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
            planned.setdefault(job.rule, []).append(S.request(*cost.predict(job, cfg, C.load(cal)), cfg)[0])
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


# ---- Slurm's own faults: a job over its time limit, a scancel, a killed master. Two finite cells of the
# smoke preset, made long enough to be caught running: early stop is off (one evaluation, at the end), and
# a checkpoint is written every 3 s. The NN cell (LONG) outlives a one-minute attempt; the NN+ cell (SHORT)
# runs well inside one. Their tables and predictions must equal an uninterrupted local run's, bit for bit.
LONG = "results/smoke/cells/grid/nn/fcn/identity/w32_m60.parquet"
SHORT = "results/smoke/cells/grid/nn_plus/fcn/identity/w32_m60.parquet"
# ~20 s and ~110 s of training on this 2-core VM: SHORT must end well inside a one-minute attempt, start-up included
STEPS = {"max_steps": 15000, "max_steps_nn": 150000}


def _fault_args(tmp_path, mini_archive, profile: bool) -> tuple:
    url, md5 = mini_archive
    cfg = {"data": {"url": url, "md5": md5, "dir": str(tmp_path.parent / "cifar")},
           "training": {**STEPS, "eval_every": STEPS["max_steps_nn"], "checkpoint_minutes": 0.05},
           # every training attempt asks Slurm for one minute (plan.max_job_hours caps a resumable job's attempt)
           "plan": {"max_job_hours": 1 / 60, "max_job_mem_gb": 4, "min_mem_mb": 500}}
    (tmp_path / "faults.yaml").write_text(yaml.safe_dump(cfg))
    args = ("--configfile", str(ROOT / "presets/smoke.yaml"), str(tmp_path / "faults.yaml"))
    if profile:
        args = ("--profile", str(ROOT / "profiles/slurm"), "--retries", "6", "--slurm-init-seconds-before-status-checks", "2",
                "--latency-wait", "5", *args)
    return args


def _same_cells(got, want, cells=(LONG, SHORT)) -> None:
    """Each cell's table (its wall time aside) and predictions, exactly."""
    import numpy as np

    from synsym.core.io import pred_path, read_cell

    for rel in cells:
        a, b = read_cell(got / rel).drop(columns="wall_s"), read_cell(want / rel).drop(columns="wall_s")
        assert a.equals(b), rel
        pa, pb = np.load(pred_path(str(got / rel))), np.load(pred_path(str(want / rel)))
        assert all(np.array_equal(pa[k], pb[k]) for k in pb.files), rel


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mini_archive):
    """The two cells run locally without any fault: the reference."""
    wd = tmp_path_factory.mktemp("faults") / "local"
    wd.mkdir()
    snakemake("--cores", "2", LONG, SHORT, *_fault_args(wd, mini_archive, profile=False), cwd=wd, timeout=600)
    return wd


def _slurm_job(cell_fragment: str) -> str | None:
    """The id of this user's running Slurm job whose comment (rule and wildcards) contains the fragment."""
    p = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True, timeout=30)
    ids = [i for i, _, c in (line.partition("|") for line in p.stdout.split()) if cell_fragment in c]
    return ids[0] if ids else None


def _wait_for(predicate, timeout_s: float, what: str):
    end = time.time() + timeout_s
    while time.time() < end:
        got = predicate()
        if got:
            return got
        time.sleep(1)
    raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {what}")


def _started(path) -> bool:
    return path.with_name(path.name + ".ckpt.pt").exists()


def test_a_job_over_its_time_limit_and_a_scancelled_job_resume_on_retry(tmp_path, mini_archive, uninterrupted):
    """LONG runs past its one-minute attempt and Slurm kills it at the limit (TIMEOUT); SHORT is scancelled
    once it has a checkpoint (CANCELLED). The profile's retries resubmit both; each resumes from its checkpoint
    and ends with the uninterrupted run's cell, bit for bit."""
    import signal

    wd = tmp_path / "slurm"
    wd.mkdir()
    args = _fault_args(wd, mini_archive, profile=True)
    cmd = [str(a) for a in ("timeout", "-k", "10", "900", sys.executable.replace("python", "snakemake"), "-s",
                            ROOT / "Snakefile", LONG, SHORT, *args)]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", TF_CPP_MIN_LOG_LEVEL="3")
    with open(wd / "master.log", "w") as log:
        master = subprocess.Popen(cmd, cwd=wd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            _wait_for(lambda: _started(wd / SHORT), 300, "SHORT's first checkpoint")
            jid = _wait_for(lambda: _slurm_job("nn_plus"), 60, "SHORT's Slurm job")
            subprocess.run(["scancel", jid], check=True, timeout=30)
            assert master.wait(timeout=900) == 0, (wd / "master.log").read_text()[-4000:]
        finally:
            if master.poll() is None:
                os.killpg(master.pid, signal.SIGKILL)
    states = subprocess.run(["sacct", "-n", "-P", "-X", "-S", "now-30minutes", "-o", "JobID,State"],
                            capture_output=True, text=True, timeout=60).stdout
    assert "CANCELLED" in states and "TIMEOUT" in states, states
    _same_cells(wd, uninterrupted)
    for rel in (LONG, SHORT):  # the last attempt's log says where it picked up
        log = (wd / rel.replace("/cells/", "/logs/cells/").replace(".parquet", ".log")).read_text()
        assert "resumed from" in log, log[-2000:]


def test_a_killed_master_recovers_with_unlock_then_rerun_incomplete(tmp_path, mini_archive, uninterrupted):
    """SIGKILL the snakemake master while SHORT runs in Slurm (SHORT alone: LONG's time limits are the test
    above's), then the recovery docs/faults.md gives: the same command with --unlock, then with
    --rerun-incomplete. The job left running in Slurm is not waited for: the rerun resubmits the cell, both
    write it whole (atomic renames of the same bytes), and it equals the uninterrupted run's."""
    import signal

    wd = tmp_path / "slurm"
    wd.mkdir()
    args = _fault_args(wd, mini_archive, profile=True)
    cmd = [str(a) for a in (sys.executable.replace("python", "snakemake"), "-s", ROOT / "Snakefile", SHORT, *args)]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", TF_CPP_MIN_LOG_LEVEL="3")
    with open(wd / "master.log", "w") as log:
        master = subprocess.Popen(cmd, cwd=wd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        _wait_for(lambda: _started(wd / SHORT), 300, "SHORT's first checkpoint")
        os.killpg(master.pid, signal.SIGKILL)
        master.wait(timeout=60)
    assert _slurm_job("nn_plus"), "the cell's Slurm job should outlive its master"
    p = snakemake(SHORT, *args, check=False, cwd=wd, timeout=120)
    assert "--unlock" in p.stdout + p.stderr  # the lock left behind names the way out
    snakemake("--unlock", SHORT, *args, cwd=wd, timeout=120)
    snakemake("--rerun-incomplete", SHORT, *args, cwd=wd, timeout=900)
    _wait_for(lambda: not _slurm_job("fcn"), 300, "the orphaned Slurm job to end")
    from synsym.core.io import read_cell

    for f in (wd / "results").rglob("*.parquet"):  # a killed writer leaves at most a hidden .tmp-* file
        read_cell(f)
    _same_cells(wd, uninterrupted, (SHORT,))
