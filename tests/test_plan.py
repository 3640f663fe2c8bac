"""The cost planner: its job list is the DAG's, its work counts are the engine's, its Slurm
requests follow the documented rule, and the workflow's resources come from it.
(Predicted vs measured runtimes of the smoke run: tests/test_workflow.py.)"""

import json
import math
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import yaml
from helpers import ROOT, dry_counts, kernel_args, load_config, snakemake

from synsym.pipeline import calibration as C
from synsym.pipeline import cost
from synsym.pipeline import jobs as J
from synsym.pipeline import plan as P
from synsym.pipeline import slurm as S

COMPUTE_RULES = ("prepare", "kernel", "kernel_cell", "scaling_cells", "train_cell")


@pytest.mark.slow
@pytest.mark.parametrize("presets", [(), ("presets/paper.yaml",)])
def test_job_list_is_the_dags(presets):
    """synsym.pipeline.jobs enumerates exactly the compute jobs Snakemake schedules."""
    got = Counter(j.rule for j in J.jobs(load_config(*presets)))
    dag = dry_counts(*[a for p in presets for a in ("--configfile", p)])
    assert got == {r: dag[r] for r in COMPUTE_RULES}


@pytest.mark.parametrize("n,b", [((60, 20, 40), 40), ((100, 30, 7), 16), ((33, 10, 10), 33)])
def test_kernel_entries_are_what_the_engine_computes(monkeypatch, n, b):
    """Count the entries of every block the real compute_family evaluates (padding included)."""
    from synsym.ntk import engine
    from synsym.ntk import kernels as K

    seen = []
    real = engine.block_fn

    def counting(*a, **k):
        fn = real(*a, **k)

        def wrapped(x1, x2=None):
            seen.append(len(x1) * len(x1 if x2 is None else x2))
            return fn(x1, x2)

        return wrapped

    monkeypatch.setattr(engine, "block_fn", counting)
    rng = np.random.default_rng(0)
    x = {k: rng.standard_normal((m, 8, 8, 3)) for k, m in zip(("train", "val", "test"), n)}
    K.compute_family("fcn", x["train"], {"val": x["val"], "test": x["test"]}, 1, b, 2.0, **kernel_args())
    cfg = load_config()
    # a quarter of the test images from the training pool (data.n_test_pool): they are test rows all the same
    cfg["data"].update(n_train=n[0], n_val=n[1], n_test=n[2] - n[2] // 4, n_test_pool=n[2] // 4)
    cfg["kernels"]["block_size"] = b
    assert cost.kernel_entries(cfg, "fcn") == sum(seen)


def test_request_rule():
    cfg = load_config()
    cfg["plan"].update(safety_factor=2.0, retry_scale=2.0, min_runtime_min=10, min_mem_mb=2000)
    assert S.request(3600, 3000, cfg) == (120, 6000)          # 2 x 60 min, 2 x 3000 MB
    assert S.request(3600, 3000, cfg, attempt=2) == (240, 12000)
    assert S.request(1, 10, cfg) == (10, 2000)                 # floors
    assert S.request(61, 10, cfg) == (10, 2000)                # ceil(122 s / 60) = 3 min < floor
    cfg["plan"]["min_runtime_min"] = 1
    assert S.request(61, 10, cfg)[0] == 3


def test_a_resumable_attempt_asks_for_at_most_max_job_hours():
    """Training jobs checkpoint and resume, so each attempt is capped; kernel shards are not."""
    cfg = load_config()
    cfg["plan"].update(safety_factor=2.0, retry_scale=2.0, max_job_hours=12)
    assert S.request(30 * 3600, 3000, cfg, rule="train_cell") == (720, 6000)
    assert S.request(30 * 3600, 3000, cfg, rule="kernel") == (3600, 6000)
    assert S.request(1800, 3000, cfg, rule="train_cell") == (60, 6000)
    # the 30th attempt of a resumable job: still 12 h, memory at most plan.max_job_mem_gb (64 GB)
    assert S.request(30 * 3600, 3000, cfg, attempt=30, rule="train_cell") == (720, 64 * 1024)
    assert S.request(30 * 3600, 3000, cfg, attempt=2, rule="train_cell") == (720, 12000)
    assert S.attempts({"pred_s": 30 * 3600}, cfg) == 3 and S.attempts({"pred_s": 60}, cfg) == 1
    rows = [{"rule": "train_cell", "pred_s": 30 * 3600, "pred_mb": 1.0}, {"rule": "kernel", "pred_s": 13 * 3600, "pred_mb": 1.0},
            {"rule": "kernel_cell", "pred_s": 1.0, "pred_mb": 65 * 1024}]
    assert [r["rule"] for r in P.over_limits(rows, cfg)] == ["kernel", "kernel_cell"]


def test_retry_asks_for_more_and_unplanned_jobs_fall_back(tmp_path):
    """The rules' resources: attempt 2 asks retry_scale x attempt 1; a job the calibration does not
    cover (another width) gets the fallback, scaled the same way."""
    cfg = load_config()
    cal_path = tmp_path / "cal.json"
    cal_path.write_text(json.dumps(fake_calibration(cfg)))
    cfg["plan"].update(calibration=str(cal_path), safety_factor=3.0, retry_scale=1.5, min_runtime_min=1)
    wc = {"study": "grid", "finite": "nn", "arch": "vec", "transform": "identity", "width": "24", "m": "1024"}
    first = S.resources("train_cell", wc, cfg, 1, (60, 8000))
    assert first == S.request(*cost.predict(J.Job("train_cell", wc), cfg, C.load(cal_path)), cfg) != (60, 8000)
    assert S.resources("train_cell", wc, cfg, 2, (60, 8000)) == S.request(
        *cost.predict(J.Job("train_cell", wc), cfg, C.load(cal_path)), cfg, attempt=2)
    assert S.request(100, 100, cfg, attempt=2) == (math.ceil(5 * 1.5), math.ceil(2000 * 1.5))
    assert S.resources("train_cell", dict(wc, width="999"), cfg, 2, (60, 8000)) == (90, 12000)
    # a resumable job's unplanned attempts stay within the cluster's limits too (plan.max_job_hours / _mem_gb)
    cfg["plan"].update(max_job_hours=1 / 60, max_job_mem_gb=10)
    assert S.resources("train_cell", dict(wc, width="999"), cfg, 9, (60, 8000)) == (1, 10240)


def fake_calibration(cfg: dict) -> dict:
    """Round numbers, so every prediction can be checked by hand."""
    cal = {"version": C.VERSION, "machine": "m", "device": "cpu", "device_name": "test",
           "overhead_s": {"prepare": 0.5, "kernel": 2.0, "kernel_cell": 0.5, "scaling_cells": 0.5, "train_cell": 2.0},
           "base_rss_mb": dict.fromkeys(COMPUTE_RULES, 300.0), "chol_flops": 1e10, "io_bytes_s": 1e9,
           "kernel": {}, "train": {}}
    for fam in ("fcn", "conv"):
        cal["kernel"][C.kernel_key(cfg, fam)] = {"s_per_entry": 1e-4 if fam == "conv" else 1e-6, "cold_extra_s": 1.0}
    for arch, width, s in C.needed(cfg)["train"]:
        cal["train"][C.train_key(cfg, arch, width, s)] = {"step_s": 0.01, "eval_s_per_seed_image": 1e-5,
                                                          "lambda_iter_s": 0.1}
    return cal


def steps_csv(path, arch="vec", inference="nn", sizes=(64, 128, 256, 512), a=3.0, alpha=0.9, unfit=(1024,)):
    """bench/convergence.py rows: 3 seeds stopping at a n^alpha x (1, 0.8, 2/3); unfit sizes have a
    seed that never stopped."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["arch", "inference", "n_train", "width", "depth", "image_size", "seed", "max_steps",
                               "fit_step", "stop_step"])
        w.writeheader()
        for n in (*sizes, *unfit):
            for seed, x in enumerate((1.0, 0.8, 2 / 3)):
                stop = "" if n in unfit and seed == 0 else a * n**alpha * x
                w.writerow({"arch": arch, "inference": inference, "n_train": n, "width": 24, "depth": 8,
                            "image_size": 8, "seed": seed, "max_steps": 9000, "fit_step": "", "stop_step": stop})
    return path


def test_step_power_law_by_hand(tmp_path):
    """The fit recovers a n^alpha from the slowest seed per size, leaves out a size where a seed never
    stopped, and the planner's steps are the prediction, at most the cap."""
    from synsym.pipeline import steps as S

    path = steps_csv(tmp_path / "c.csv")
    f = S.fit(S.read_rows(path), "vec", "nn")
    assert f.alpha == pytest.approx(0.9, abs=1e-9) and f.a == pytest.approx(3.0, rel=1e-9)
    assert f.sizes == (64, 128, 256, 512) and f.censored == (1024,) and f.spread == pytest.approx(1.5)
    assert f.alpha_se == pytest.approx(0.0, abs=1e-9) and f.seeds == 3
    assert S.predicted_steps("vec", "nn", 2048, 10**6, path) == (math.ceil(3 * 2048**0.9), f)
    assert S.predicted_steps("vec", "nn", 2048, 500, path)[0] == 500  # capped
    assert S.predicted_steps("gap", "nn", 2048, 500, path) == (500, None)  # not measured: the cap
    assert S.fit(S.read_rows(tmp_path / "none.csv"), "vec", "nn") is None


def test_predictions_by_hand(tmp_path, monkeypatch):
    from synsym.pipeline import steps as S

    monkeypatch.setattr(S, "CSV", steps_csv(tmp_path / "c.csv", alpha=0.5, a=10.0))
    cfg = load_config()  # blocks of 32, 2 seeds; sizes and steps pinned here, whatever the default preset's
    cfg["data"].update(n_train=1024, n_val=128, n_test=512)
    cfg["training"].update(max_steps=500, max_steps_nn=None, eval_every=100)
    cal = fake_calibration(cfg)
    s, _ = cost.predict(J.Job("kernel", {"family": "conv", "transform": "identity", "seed": "0", "shard": "0"}), cfg, cal)
    entries = (32 * 33 // 2 + (4 + 16) * 32) * 32 * 32
    file_bytes = 8 * 2 * 4 * 1024 * (1024 + 128 + 512)  # the shard's stripes: every row, 4 readouts x 2 kinds
    assert entries == cost.kernel_entries(cfg, "conv") == cost.kernel_entries(cfg, "conv", 0)
    assert s == pytest.approx(2.0 + 1.0 + entries * 1e-4 + file_bytes / 1e9)
    # in 3 shards: 52 row blocks (32 train, 4 val, 16 test) of 32 images, split by block calls
    # (train block i: 32 - i calls; val, test: 32 each): 528 + 640 = 1,168 calls, 389-390 per shard
    cfg["kernels"]["shards"]["conv"] = 3
    calls = [cost.kernel_entries(cfg, "conv", k) // (32 * 32) for k in range(3)]
    assert sum(calls) == 528 + 640 and max(calls) - min(calls) <= 32, calls
    cfg["kernels"]["shards"]["conv"] = 1
    job = J.Job("train_cell", {"study": "grid", "finite": "nn", "arch": "vec", "transform": "identity",
                               "width": "24", "m": "1024"})
    s, _ = cost.predict(job, cfg, cal)
    # priced at the predicted 10 x 1024^0.5 = 320 steps (4 evaluations), not at the cap of 500
    assert s == pytest.approx(2.0 + 30 * 0.1 + 320 * 0.01 + 4 * 2 * (1024 + 128 + 512) * 1e-5)
    row = next(r for r in P.bill(cfg, cal) if r["job"] == job.name)
    assert (row["steps"], row["cap"]) == (320, 500)
    assert row["cap_s"] == pytest.approx(2.0 + 30 * 0.1 + 500 * 0.01 + 5 * 2 * (1024 + 128 + 512) * 1e-5)
    cfg["plan"]["price_steps"] = "cap"
    assert cost.predict(job, cfg, cal)[0] == pytest.approx(row["cap_s"])
    cfg["plan"]["price_steps"] = "predicted"
    # 4 grid transforms (O(3)⊗I_d is served by the identity's) + 3 S-Dist path points have conv kernel jobs;
    # 64^2 (a, delta) elements, depth 8
    assert cost.kernel_flops(cfg) == 7 * entries * 64**2 * (47 * 8 + 14)


@pytest.mark.slow
def test_workflow_requests_the_plan(tmp_path):
    """With a calibration, the rules' runtime/mem_mb are plan.request(plan.predict(job)); without, the fallbacks."""
    cfg = load_config("presets/smoke.yaml")
    cal_path = tmp_path / "cal.json"
    cal_path.write_text(json.dumps(fake_calibration(cfg)))
    extra = tmp_path / "plan.yaml"
    extra.write_text(yaml.safe_dump({"plan": {"calibration": str(cal_path), "safety_factor": 50}}))
    cfg["plan"].update(calibration=str(cal_path), safety_factor=50)
    out = snakemake("-n", "--configfile", str(ROOT / "presets/smoke.yaml"), str(extra), "--forceall", "-p",
                    cwd=tmp_path).stdout
    seen = 0
    for block in re.split(r"\n\s*rule ", out)[1:]:  # grouped jobs (regress) are indented
        rule = block.split(":")[0]
        if rule not in COMPUTE_RULES:
            continue
        wc = dict(kv.split("=", 1) for kv in _field(block, "wildcards").split(", ")) if "wildcards:" in block else {}
        res = dict(kv.split("=", 1) for kv in _field(block, "resources").split(", "))
        want = S.request(*cost.predict(J.Job(rule, wc), cfg, C.load(cal_path)), cfg)
        assert (int(res["runtime"]), int(res["mem_mb"])) == want, (rule, wc, res)
        seen += 1
    assert seen == sum(1 for _ in J.jobs(cfg))


@pytest.mark.slow
def test_without_a_calibration_the_rules_ask_for_the_configured_fallback(tmp_path):
    """No calibration prices the smoke jobs here: each compute rule asks for plan.fallback_runtime_min[rule]
    (the paper preset's days come from its config, not from its run's name)."""
    fb = {"prepare": 31, "kernel": 62, "kernel_cell": 33, "scaling_cells": 34, "train_cell": 77, "kernel_curves": 1440}
    extra = tmp_path / "plan.yaml"
    extra.write_text(yaml.safe_dump({"plan": {"fallback_runtime_min": fb}}))
    out = snakemake("-n", "--configfile", str(ROOT / "presets/smoke.yaml"), str(extra), "--forceall", cwd=tmp_path).stdout
    asked = {}
    for block in re.split(r"\n\s*rule ", out)[1:]:
        rule = block.split(":")[0]
        if rule in fb and "resources:" in block:
            asked.setdefault(rule, set()).add(int(dict(kv.split("=", 1) for kv in _field(block, "resources").split(", "))["runtime"]))
    assert asked == {r: {fb[r]} for r in ("prepare", "kernel", "kernel_cell", "scaling_cells", "train_cell")}
    assert load_config("presets/paper.yaml")["plan"]["fallback_runtime_min"]["train_cell"] == 3 * 24 * 60


def _field(block: str, name: str) -> str:
    return next(ln.split(":", 1)[1].strip() for ln in block.splitlines() if ln.strip().startswith(f"{name}:"))


@pytest.mark.parametrize("args,needle", [
    (["--calibration", "nope.json"], "nope.json does not exist; add --calibrate"),
    (["--configfile", str(ROOT / "presets/paper.yaml")], "no CUDA GPU"),  # this machine has none (CI)
])
@pytest.mark.slow
def test_plan_cli_errors_are_one_line(tmp_path, args, needle):
    import torch

    if "no CUDA GPU" in needle and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = dict(os.environ, SYNSYM_ROOT=str(ROOT))  # the study, run from elsewhere
    p = subprocess.run([sys.executable, "-m", "synsym.cli", "plan", *args], capture_output=True, text=True, cwd=tmp_path,
                       env=env)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and needle in p.stderr, p.stderr


@pytest.mark.slow
def test_plan_cli_prints_the_bill(tmp_path):
    cfg = load_config("presets/paper.yaml")
    cfg["device"] = "cpu"
    cal_path = tmp_path / "cal.json"
    cal_path.write_text(json.dumps(fake_calibration(cfg)))
    p = subprocess.run([sys.executable, "-m", "synsym.cli", "plan", "--configfile", str(ROOT / "presets/paper.yaml"),
                        "--device", "cpu", "--calibration", str(cal_path), "--jobs", str(tmp_path / "jobs.tsv")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    total = sum(cost.predict(j, cfg, C.load(cal_path))[0] for j in J.jobs(cfg)) / 3600
    assert f"**{total:.3g}**" in p.stdout and "CPU-hours" in p.stdout
    # training at predicted steps and at the cap, per architecture and inference
    assert "CPU-hours at predicted steps" in p.stdout and "| architecture | inference | jobs | predicted steps" in p.stdout
    rows = (tmp_path / "jobs.tsv").read_text().splitlines()
    assert len(rows) == 1 + len(J.jobs(cfg)) and math.isfinite(float(rows[1].split("\t")[2]))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["presets/kernels.yaml", "presets/one-gpu.yaml"])
def test_kernel_curves_presets_are_one_job(preset):
    """A kernels-only preset (kernel_curves.only) is the split and one kernel-curves job, in the plan and the DAG."""
    got = Counter(j.rule for j in J.jobs(load_config(preset)))
    dag = dry_counts("--configfile", preset)
    assert got == {"prepare": 1, "kernel_curves": 1}
    assert {r: n for r, n in dag.items() if r not in ("all", "total")} == got


def test_one_gpu_preset_fits_an_hour_on_the_h200_calibration():
    """presets/one-gpu.yaml is priced at <= 60 minutes on the H200's calibration; its kernels by hand: blocks of 8,
    the upper triangle of train-train plus val and test, identity and O(3)^d at 1,280 images, P(3d) and O(3d) at
    320 (O(3)⊗I_d and the FCN's other transforms are served by Theorem 4.1)."""
    cfg = load_config("presets/one-gpu.yaml")
    cal = C.load(ROOT / "calibrations" / "h200-paper-calibration.json")
    rows = {r["rule"]: r for r in P.bill(cfg, cal)}
    assert sum(r["pred_s"] for r in rows.values()) <= 3600, rows

    def entries(n):  # blocks of 8: 160 (or 40) train blocks, 32 val and 250 test blocks
        nt = n // 8
        return (nt * (nt + 1) // 2 + (256 // 8 + 2000 // 8) * nt) * 64

    conv, fcn = (cal["kernel"][f"{f}/s32/L8/b8/fast"] for f in ("conv", "fcn"))
    kernel_s = (2 * entries(1280) + 2 * entries(320)) * conv["s_per_entry"] + entries(1280) * fcn["s_per_entry"]
    kernel_s += 4 * conv["cold_extra_s"] + fcn["cold_extra_s"]
    assert kernel_s < rows["kernel_curves"]["pred_s"] < kernel_s + 600  # + overhead and the regressions
    bigger = load_config("presets/one-gpu.yaml")  # 1.25x the images would not fit
    bigger["kernel_curves"]["transforms"].update(identity=1600, o3_per_pixel=1600, o3_shared=1600)
    bigger["data"]["n_train"] = 1600
    assert sum(r["pred_s"] for r in P.bill(bigger, cal)) > 3600


@pytest.mark.slow
def test_plan_prices_the_paper_kernels_with_and_without_reuse():
    """kernels.reuse_invariant: the paper preset's kernel jobs, by hand, 2 fcn shards x 5 transforms + 14 conv
    shards x 10 (transforms and path points) without reuse, 2 x 1 + 14 x 9 with it; the bill drops by exactly
    the jobs left out (each shard of one family costs the same whatever its transform)."""
    cfg = load_config("presets/paper.yaml")
    cal = C.load(ROOT / "calibrations" / "h200-paper-calibration.json")
    line = P.reuse_line(cfg, cal, "GPU-hours")
    m = re.match(r"# kernel jobs: (\d+) jobs, ([\d.,]+) GPU-hours one per transform; (\d+) jobs, ([\d.,]+) GPU-hours", line)
    assert m and (int(m[1]), int(m[3])) == (2 * 5 + 14 * 10, 2 * 1 + 14 * 9), line
    kern = [r for r in P.bill(cfg, cal) if r["rule"] == "kernel"]
    fcn = sum(r["pred_s"] for r in kern if "family=fcn" in r["job"])  # the identity's kernel, 2 shards
    conv_t = sum(r["pred_s"] for r in kern if "family=conv" in r["job"] and "transform=identity" in r["job"])
    assert float(m[2].replace(",", "")) == pytest.approx(float(m[4].replace(",", "")) + (4 * fcn + conv_t) / 3600, abs=0.1)


@pytest.mark.slow
def test_bill_page_is_fresh():
    """docs/bill.md is what the planner prints for its presets and calibrations today (regenerate with
    `python -m synsym.pipeline.bill_page --write docs/bill.md`), with the reuse the paper preset runs with."""
    from synsym.pipeline import bill_page

    text = (ROOT / "docs" / "bill.md").read_text()
    assert text == bill_page.page(ROOT), "docs/bill.md is stale: python -m synsym.pipeline.bill_page --write docs/bill.md"
    assert "| kernel | 128 |" in text and "| **total** | 344 |" in text  # 2 fcn + 14 x 9 conv shards, by hand
