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


def train(split_path, out, spec: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "synsym.cli", "train", "--spec", json.dumps(spec), "--study", "grid", "--inference",
           "nn_plus", "--arch", "gap", "--transform", "o3_per_pixel", "--width", "4", "--m", "40", "--split",
           str(split_path), "--out", str(out)]
    import os

    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


SPEC = {"run_name": "t", "global_seed": 0, "depth": 2, "seeds": [0, 1], "device": "cpu",
        "training": {"max_steps": 40, "eval_every": 10, "batch_size": 8, "momentum": 0.9, "eta0_samples": 16,
                     "accept_train_acc": 0.95, "eval_batch": 64, "checkpoint_minutes": 0}}


def test_killed_training_job_resumes_bit_for_bit(split_path, tmp_path):
    a = train(split_path, tmp_path / "a.parquet", SPEC)
    assert a.returncode == 0, a.stderr[-2000:]
    out = tmp_path / "b.parquet"
    killed = train(split_path, out, SPEC, {"SYNSYM_KILL_AFTER_STEP": "13"})
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


def test_a_checkpoint_of_another_config_is_ignored(split_path, tmp_path):
    out = tmp_path / "c.parquet"
    killed = train(split_path, out, SPEC, {"SYNSYM_KILL_AFTER_STEP": "5"})
    assert killed.returncode == -9
    other = {**SPEC, "training": {**SPEC["training"], "max_steps": 20}}
    r = train(split_path, out, other)
    assert r.returncode == 0 and "resumed" not in r.stderr
