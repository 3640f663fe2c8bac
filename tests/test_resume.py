"""Training jobs that survive a time limit: SIGKILL mid-run, rerun, and the cell equals an
uninterrupted run's bit for bit (the real CLI, a small synthetic split)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from synsym.core.data import Split


@pytest.fixture(scope="module")
def split_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    g = np.random.default_rng(0)
    parts = {"train": 40, "val": 12, "test": 16}
    Split(**{k: v for p, n in parts.items() for k, v in ((f"x_{p}", g.standard_normal((n, 8, 8, 3))),
                                                         (f"y_{p}", np.arange(n) % 10))}).save(d / "split.npz")
    return d / "split.npz"


@pytest.fixture(scope="module")
def learnable_split(tmp_path_factory):
    """Labels a linear function of the images picks, so FCN nets fit them, each seed at its own step."""
    d = tmp_path_factory.mktemp("resume_fit")
    g = np.random.default_rng(0)
    w = g.standard_normal((8 * 8 * 3, 10))
    arrays = {}
    for part, n in {"train": 40, "val": 12, "test": 16}.items():
        x = g.standard_normal((n, 8, 8, 3))
        arrays[f"x_{part}"], arrays[f"y_{part}"] = x, (x.reshape(n, -1) @ w).argmax(1)
    Split(**arrays).save(d / "split.npz")
    return d / "split.npz"


def train(split_path, out, spec: dict, env: dict | None = None, arch=("gap", "4", "o3_per_pixel")) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "synsym.cli", "train", "--spec", json.dumps(spec), "--study", "grid", "--inference",
           "nn_plus", "--arch", arch[0], "--transform", arch[2], "--width", arch[1], "--m", "40", "--split",
           str(split_path), "--out", str(out)]
    import os

    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


SPEC = {"run_name": "t", "global_seed": 0, "depth": 2, "seeds": [0, 1], "device": "cpu", "padding": "circular",
        "training": {"max_steps": 40, "eval_every": 10, "batch_size": 8, "momentum": 0.9, "eta0_samples": 16,
                     "accept_train_acc": 0.95, "eval_batch": 64, "checkpoint_minutes": 0}}


@pytest.mark.slow
def test_killed_training_job_resumes_bit_for_bit(split_path, tmp_path):
    a = train(split_path, tmp_path / "a.parquet", SPEC)
    assert a.returncode == 0, a.stderr[-2000:]
    out = tmp_path / "b.parquet"
    killed = train(split_path, out, SPEC, {"SYNSYM_KILL": "checkpoint:13"})
    assert killed.returncode == -9 and not out.exists()  # SIGKILL between steps 13 and 14: mid-interval
    assert (tmp_path / "b.parquet.ckpt.pt").exists()
    b = train(split_path, out, SPEC)
    assert b.returncode == 0, b.stderr[-2000:]
    assert "at step 13/40" in b.stderr and not (tmp_path / "b.parquet.ckpt.pt").exists()
    ta, tb = (pd.read_parquet(p).drop(columns=["wall_s"]) for p in (tmp_path / "a.parquet", out))
    pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    assert ta["steps"].min() > 13  # the resumed part did train
    pa, pb = (np.load(tmp_path / f"{n}.pred.npz")["pred"] for n in "ab")
    assert np.array_equal(pa, pb)


@pytest.mark.slow
def test_a_kill_between_checkpoints_replays_work_and_restores_a_stack_with_stopped_seeds(learnable_split, tmp_path):
    """Three FCN seeds: two fit their training set and stop (steps 80 and 90), the third trains to the cap.
    Checkpoints come every 60 ms of wall time; SIGKILL at step 200 lands between two, after the stops. The
    rerun restores the one-seed stack, replays the steps since the last checkpoint, and equals an
    uninterrupted run bit for bit."""
    import re

    spec = {**SPEC, "seeds": [0, 1, 2],
            "training": {**SPEC["training"], "max_steps": 400, "checkpoint_minutes": 0.001}}
    fcn = ("fcn", "256", "identity")
    a = train(learnable_split, tmp_path / "a.parquet", spec, arch=fcn)
    assert a.returncode == 0, a.stderr[-2000:]
    ta = pd.read_parquet(tmp_path / "a.parquet").drop(columns=["wall_s"])
    assert ta["steps"].tolist() == [80, 90, 400]  # two seeds stopped, one went on
    out = tmp_path / "b.parquet"
    killed = train(learnable_split, out, spec, {"SYNSYM_KILL": "step:200"}, arch=fcn)
    assert killed.returncode == -9 and not out.exists()
    b = train(learnable_split, out, spec, arch=fcn)
    assert b.returncode == 0, b.stderr[-2000:]
    start = int(re.search(r"at step (\d+)/400", b.stderr)[1])
    assert 90 < start < 200  # resumed after both stops, with steps start+1 ... 200 replayed
    assert "active 1/3" in b.stderr.split("resumed from")[1].splitlines()[1]  # the restored stack: one live seed
    pd.testing.assert_frame_equal(pd.read_parquet(out).drop(columns=["wall_s"]), ta, check_exact=True)
    pa, pb = (np.load(tmp_path / f"{n}.pred.npz")["pred"] for n in "ab")
    assert np.array_equal(pa, pb)


@pytest.mark.slow
def test_a_checkpoint_of_another_config_is_ignored(split_path, tmp_path):
    out = tmp_path / "c.parquet"
    killed = train(split_path, out, SPEC, {"SYNSYM_KILL": "checkpoint:5"})
    assert killed.returncode == -9
    other = {**SPEC, "training": {**SPEC["training"], "max_steps": 20}}
    r = train(split_path, out, other)
    assert r.returncode == 0 and "resumed" not in r.stderr
