"""Kernel learning curves (synsym.study.kernel_curves) on the real mini archive: sub-matrix regressions equal
regressions on freshly computed kernels, every Theorem 4.1 reuse is checked and a wrong one stops the run,
draws are paired across kernels, and the ordering table's arithmetic is what it says."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import kernel_args

from synsym.core import jobspec
from synsym.core.data import make_split
from synsym.ntk import kernels as K
from synsym.ntk import regression
from synsym.study import cells
from synsym.study import kernel_curves as KC

# device auto, as a config may say: core.jobspec.load resolves it where the job starts, as the CLI does
SPEC = {"global_seed": 0, "depth": 2, "device": "auto", "ridges": [1e-3, 1e-1],
        "kernels": {"engine": "fast", "precision": "float64", "block_size": 16, "max_memory_gb": 1.0},
        "kernel_curves": {"paddings": ["circular", "zero"], "sizes": [8, 16], "draws": 3,
                          "transforms": {"identity": 24, "o3_shared": 24, "o3_per_pixel": 16}}}


@pytest.fixture(scope="module")
def run(mini_batches, tmp_path_factory):
    out = tmp_path_factory.mktemp("kc")
    make_split(mini_batches, 24, 12, 20, 0, 8, 0, False).save(out / "split.npz")
    table = KC.run(jobspec.load(SPEC, "kernel-curves"), str(out / "split.npz"), str(out))
    KC.report(table, out)
    return out


def test_table_and_reuse_checks(run):
    df = pd.read_csv(run / KC.TABLE)
    assert list(df.columns) == KC.COLUMNS
    # 2 paddings x (identity, o3_shared: 8, 16 x 3 draws + 24 x 1; o3_per_pixel: 8 x 3 + 16 x 1) x 6 archs x 2 kinds
    assert len(df) == 2 * (2 * 7 + 4) * 6 * 2
    reuse = json.loads((run / "reuse.json").read_text())
    # FCN serves o3_shared and o3_per_pixel from identity; conv serves o3_shared; per padding
    assert sorted(reuse) == sorted(f"{p}/{f}/{t}" for p in ("circular", "zero")
                                   for f, t in (("fcn", "o3_shared"), ("fcn", "o3_per_pixel"), ("conv", "o3_shared")))
    assert all(r["max_rel_diff"] < 1e-12 for r in reuse.values())  # float64: far inside the check's tolerance
    # only the kernels that no theorem serves were computed
    assert sorted(p.relative_to(run / "kernels").as_posix() for p in (run / "kernels").glob("*/*/*")) == sorted(
        f"{p}/{f}/{t}" for p in ("circular", "zero") for f, t in (("fcn", "identity"), ("conv", "identity"),
                                                                     ("conv", "o3_per_pixel")))
    # a served transform's accuracies are the identity's, draw for draw
    a = df[df["transform"] == "o3_shared"].drop(columns="transform").reset_index(drop=True)
    b = df[df["transform"] == "identity"].drop(columns="transform").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for name in ("kernel_curves.png", "kernel_curves_summary.csv", "ntk_ordering.csv", "kernel_curves.md"):
        assert (run / name).stat().st_size > 0


def test_sub_matrix_regression_equals_a_fresh_kernel(run):
    """A draw's regression on sub-matrices of the big kernel equals computing the kernel of just those images."""
    split = cells.Split.load(run / "split.npz")
    d = cells.transformed(split, "o3_per_pixel", 0, 0, 16)
    idx = KC.subsets(0, 16, 8, 3)[1]  # o3_per_pixel's largest size is 16: its draws come from those images
    x = d["x_train"][idx]
    fresh = K.compute_family("conv", x, {"val": d["x_val"], "test": d["x_test"]}, 2, 16, 1.0, **kernel_args(padding="zero"))
    want = regression.regress(fresh, "gap", "ntk", split.y_train[idx], split.y_val, split.y_test, SPEC["ridges"], device="cpu")
    df = pd.read_csv(run / KC.TABLE)
    got = df[(df["padding"] == "zero") & (df["transform"] == "o3_per_pixel") & (df["architecture"] == "gap")
             & (df["inference"] == "ntk") & (df["n_train"] == 8) & (df["draw"] == 1)]
    assert len(got) == 1 and got.test_acc.iloc[0] == want["test_acc"] and got.ridge.iloc[0] == want["ridge"]


def test_a_wrong_reuse_stops_the_run(run, monkeypatch, tmp_path):
    """Serve O(3)^d's conv kernel from the identity's (Theorem 4.1 does not allow it): the check must catch it."""
    monkeypatch.setattr(KC.A, "kernel_source", lambda family, t: "identity")
    spec = {**SPEC, "kernel_curves": {**SPEC["kernel_curves"], "paddings": ["circular"],
                                      "transforms": {"o3_per_pixel": 16}}}
    with pytest.raises(ValueError, match=r"^kernel circular/conv/o3_per_pixel: served by identity's kernel .* differs"):
        KC.run(jobspec.load(spec, "kernel-curves"), str(run / "split.npz"), str(tmp_path))


def test_subsets_are_keyed_and_nested_at_the_top():
    a, b = KC.subsets(0, 100, 10, 4), KC.subsets(0, 100, 10, 4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len({tuple(x) for x in a}) == 4
    assert np.array_equal(KC.subsets(0, 100, 100, 4)[0], np.arange(100))
    assert not np.array_equal(KC.subsets(1, 100, 10, 4)[0], a[0])


def test_ordering_arithmetic():
    """Two draws, n_test 1000: GAP 0.50/0.52, VEC 0.40/0.44, FCN 0.39/0.41 -> the gaps, their noise, the verdicts."""
    rows = [{"padding": "zero", "transform": "identity", "architecture": a, "inference": "ntk", "n_train": 8, "draw": r,
             "ridge": 0.1, "val_acc": 0.0, "test_acc": acc, "n_test": 1000}
            for a, accs in (("gap", (0.50, 0.52)), ("vec", (0.40, 0.44)), ("fcn", (0.39, 0.41))) for r, acc in enumerate(accs)]
    o = KC.ordering(pd.DataFrame(rows)).iloc[0]
    assert o["gap-vec"] == pytest.approx(0.09) and o["vec-fcn"] == pytest.approx(0.02)
    # gap-vec: paired diffs 0.10, 0.08 -> sd 0.01414, se 0.01; binomial (0.51*0.49 + 0.42*0.58)/1000 -> 0.0244,
    # so 0.09 > 2 x 0.0244; vec-fcn: 0.02 against a noise of 0.0242
    assert o["gap-vec noise"] == pytest.approx(np.sqrt(0.01**2 + (0.51 * 0.49 + 0.42 * 0.58) / 1000))
    assert o["gap>vec"] and not o["vec>fcn"] and not o["ordered"]


@pytest.mark.slow
def test_gpu_runbook_smoke_form(tmp_path, mini_dir):
    """The GPU runbook's CPU smoke form, as a bare GPU machine would run it: its own process, the mini archive's
    folder passed in, no snakemake; it writes its table, reuse checks, figure and ordering under --out."""
    import subprocess
    import sys

    archive = mini_dir
    code = ("import sys; from synsym.study import kernel_curves as K; "
            f"rc = K.runbook(['--archive', {str(archive)!r}, '--out', {str(tmp_path)!r}, '--slice', 'smoke', '--device', 'cpu']); "
            "print(rc, 'neural_tangents' in sys.modules, 'snakemake' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and p.stdout.split() == ["0", "False", "False"], (p.stdout, p.stderr[-3000:])
    df = pd.read_csv(tmp_path / KC.TABLE)
    assert set(df["padding"]) == {"circular", "zero"} and set(df["transform"]) == {"identity", "o3_per_pixel"}
    assert (tmp_path / "kernel_curves.png").stat().st_size > 0 and (tmp_path / "ntk_ordering.csv").exists()
    assert json.loads((tmp_path / "runbook.json").read_text())["slice"] == "smoke"
    bad = subprocess.run([sys.executable, "-m", "synsym.study.kernel_curves", "--archive", str(tmp_path / "nowhere"),
                          "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "MANIFEST" in bad.stderr


def test_paired_test_noise(run):
    """The per-image correctness of every regression is stored; with it the test set's part of a gap's noise is
    paired (both classifiers scored on the same images) and no larger than the unpaired binomial bound."""
    df = pd.read_csv(run / KC.TABLE)
    correct = dict(np.load(run / KC.CORRECT))
    assert len(correct) == len(df)
    r = df.iloc[0]
    vec = correct[KC.key_of(r["padding"], r["transform"], r.to_dict())]
    assert vec.dtype == bool and vec.mean() == pytest.approx(r["test_acc"])
    paired, unpaired = KC.ordering(df, correct=correct), KC.ordering(df)
    assert (paired["gap-vec noise"] <= unpaired["gap-vec noise"] + 1e-12).all()
    assert np.allclose(paired["gap-vec"], unpaired["gap-vec"])
