"""Derived tables: power-law fits, S-Dist, and the invariance report's verdicts."""

import numpy as np
import pandas as pd
import pytest

from synsym.core import metrics
from synsym.study import tables as S


def test_power_law_fit_recovers_exponent():
    m = np.array([32, 64, 128, 256, 512])
    alpha, se = metrics.power_law_fit(m, 3.0 * m**-0.4)
    assert abs(alpha - 0.4) < 1e-12 and se < 1e-10
    alpha, se = metrics.power_law_fit(m, 3.0 * m**-0.4 * np.exp([0.05, -0.05, 0.02, 0, -0.02]))
    assert abs(alpha - 0.4) < 0.05 and se > 0


def rows(alpha_small, alpha_large):
    m = np.array([100, 200, 400, 800])
    err = np.concatenate([m[:2] ** -alpha_small, (m[2:] ** -alpha_large) * (200**-alpha_small / 200**-alpha_large)])
    return pd.DataFrame({"study": "curves", "inference": "nn_plus", "architecture": "vec", "transform": "identity",
                         "n_train": m, "test_acc": 1 - err, "test_mse": err / 2, "status": "ok", "accepted": True})


def test_dide_check_sees_steeper_large_m_slope():
    f = S.scaling_fits(rows(0.1, 0.5)).iloc[0]
    assert abs(f["alpha_err_small_m"] - 0.1) < 1e-9 and abs(f["alpha_err_large_m"] - 0.5) < 1e-9
    assert abs(f["alpha_mse_large_m"] - 0.5) < 1e-9


def test_fits_show_what_repicking_the_ridge_changes():
    """A kernel curve with a held ridge (err ~ m^-0.3) whose per-size re-picks give m^-0.6."""
    m = np.array([100, 200, 400, 800])
    df = pd.DataFrame({"study": "curves", "inference": "ntk", "architecture": "vec", "transform": "identity",
                       "n_train": m, "test_acc": 1 - m**-0.3, "test_mse": m**-0.3, "status": "ok", "accepted": True,
                       "ridge": 0.0, "ridge_repick": [1e-1, 1e-2, 1e-3, 0.0],
                       "test_acc_repick": 1 - m**-0.6, "test_mse_repick": m**-0.6})
    f = S.scaling_fits(df).iloc[0]
    assert f["alpha_err"] == pytest.approx(0.3) and f["alpha_err_repick"] == pytest.approx(0.6)
    assert f["alpha_mse_repick"] == pytest.approx(0.6) and f["ridge"] == "0"
    assert np.isnan(S.scaling_fits(rows(0.1, 0.5)).iloc[0]["alpha_err_repick"])  # finite nets: no ridge
    wins = S.ridge_wins({"curves": df}, [1e-3, 1e-2, 1e-1]).set_index("ridge")
    assert wins["wins"].to_dict() == {"0.1": 1, "0.01": 1, "0.001": 1, "ridgeless": 1}
    assert (wins["picked_by"] == "ridge_repick").all() and wins["share"].sum() == pytest.approx(1.0)


def test_sdist_by_hand():
    y = np.array([0, 1])
    vec = np.zeros((2, 2, 10))
    vec[0, :, 0], vec[1, :, 0] = 1.0, 3.0  # ensemble mean: 2 on logit 0
    gap = np.zeros((1, 2, 10))
    ntk = np.zeros((2, 10))
    ntk[:, 1] = 1.0
    t = S.sdist_table({("vec", "nn_plus", 8, 0.5): vec, ("gap", "nn_plus", 8, None): gap,  # GAP_n: clean data
                       ("vec", "ntk", None, 0.5): ntk[None]}, y).iloc[0]
    assert t["sdist_to_gap"] == pytest.approx(4.0)  # |2 - 0|^2 on one logit
    assert t["sdist_to_vec_ntk"] == pytest.approx(5.0)  # 2^2 + 1^2
    assert t["ensemble_test_acc"] == 0.5 and t["ensemble_size"] == 2


def grid(accs):
    out = []
    for tid, vals in accs.items():
        for s, a in enumerate(vals):
            out.append({"architecture": "gap", "inference": "nn", "transform": tid, "test_acc": a, "seed": s,
                        "status": "ok", "n_test": 1000})
    return pd.DataFrame(out)


def test_paired_gap_by_hand():
    # two finite runs and one kernel on 4 test images
    a = np.array([[1, 1, 0, 1], [1, 0, 0, 1]])
    b = np.array([[1, 0, 1, 0]])
    g = S.paired_gap(a, b)
    d = np.array([0.0, 0.5, -1.0, 1.0])  # per-image: mean of a's runs - b
    assert g["delta"] == pytest.approx(0.125)
    assert g["se_test"] == pytest.approx(d.std(ddof=1) / 2)
    assert g["se_runs"] == pytest.approx(np.std([0.25, 0.0], ddof=1) / np.sqrt(2))  # each run's gap: 0.75 - 0.5, 0.5 - 0.5
    assert g["se"] == pytest.approx(np.hypot(g["se_test"], g["se_runs"]))


def test_finite_vs_kernel_counts_accepted_runs_only():
    y = np.array([0, 1, 2, 3])
    onehot = np.eye(10)
    right, wrong = onehot[y], onehot[(y + 1) % 10]
    preds = {("nn_plus", "gap", "identity"): (np.stack([right, wrong, right]), np.array([0, 1, 2])),
             ("ntk", "gap", "identity"): (np.stack([np.concatenate([right[:2], wrong[2:]])]), np.array([0])),
             ("nngp", "gap", "identity"): (np.stack([right]), np.array([0]))}
    grid = pd.DataFrame({"inference": "nn_plus", "architecture": "gap", "transform": "identity", "seed": [0, 1, 2],
                         "accepted": [True, False, True], "test_acc_best": [1.0, 0.25, 0.5]})
    t = S.finite_vs_kernel(grid, preds, y)
    assert len(t) == 1
    r = t.iloc[0]
    assert (r["runs"], r["accepted"]) == (3, 2)
    assert r["finite_acc"] == 1.0 and r["ntk_acc"] == 0.5 and r["nngp_acc"] == 1.0  # seed 1 (all wrong) not counted
    assert r["finite_acc_best"] == 0.75
    assert r["delta_vs_ntk"] == 0.5 and r["delta_vs_nngp"] == 0.0
    grid["accepted"] = False
    r = S.finite_vs_kernel(grid, preds, y).iloc[0]
    assert r["accepted"] == 0 and np.isnan(r["finite_acc"]) and np.isnan(r["delta_vs_ntk"]) and not r["beyond_noise_vs_ntk"]


def test_symmetry_report_flags_contradictions_only():
    g = grid({"identity": [0.50, 0.51], "o3_shared": [0.30, 0.31], "perm_3d": [0.50, 0.51]})
    rep = S.symmetry_report(g, {("gap", "o3_shared", "ntk"): 1e-14, ("gap", "o3_per_pixel", "ntk"): 1e-15,
                                ("fcn", "o_3d", "ntk"): 0.2})
    by = {(r.architecture, r.inference, r.transform): r.agrees for r in rep.itertuples()}
    assert by[("gap", "ntk", "o3_shared")]  # invariant kernel, as predicted
    assert not by[("gap", "ntk", "o3_per_pixel")]  # predicted to break, measured invariant: flagged
    assert not by[("fcn", "ntk", "o_3d")]  # predicted invariant, kernel changed: flagged
    assert not by[("gap", "nn", "o3_shared")]  # SGD accuracy moved under a predicted invariance: flagged
    assert by[("gap", "nn", "perm_3d")]  # equality where a change is allowed is no contradiction


def test_fig2_panel_counts_accepted_runs():
    from synsym.study.figures import acceptance

    df = pd.DataFrame({
        "inference": ["nn"] * 5 + ["nn_plus"] * 2,
        "architecture": ["gap", "fcn", "fcn", "gap", "fcn", "fcn", "gap"],
        "accepted": [False, True, True, True, False, True, False],
    })
    assert acceptance(df, "nn") == "accepted runs (train acc >= 95%): 3/5\nFCN 2/3, GAP 1/2"
    assert acceptance(df, "nn_plus") == "accepted runs (train acc >= 95%): 1/2\nFCN 1/1, GAP 0/1"


def test_paired_gap_counts_both_sides_runs():
    """Two finite sides (each with its seeds): the init noise of both enters, each side's variance over its runs."""
    a = np.array([[1, 1, 0, 1], [1, 0, 0, 1]])
    b = np.array([[1, 0, 1, 0], [0, 0, 1, 0], [1, 1, 1, 0]])
    g = S.paired_gap(a, b)
    assert g["delta"] == pytest.approx(0.625 - 0.5)
    want = np.sqrt(np.var([0.75, 0.5], ddof=1) / 2 + np.var([0.5, 0.25, 0.75], ddof=1) / 3)
    assert g["se_runs"] == pytest.approx(want)


def test_transform_gaps_by_hand():
    """Each transform's cell against the base's on the same images, finite cells with accepted runs only."""
    y = np.array([0, 1, 2, 3])
    onehot = np.eye(10)
    right, wrong = onehot[y], onehot[(y + 1) % 10]
    half = np.concatenate([right[:2], wrong[2:]])

    def run(tid: str, finite: list, kernel: np.ndarray, accepted: list) -> tuple:
        grid = pd.DataFrame({"inference": "nn_plus", "architecture": "vec", "transform": tid, "seed": range(len(finite)),
                             "accepted": accepted})
        return grid, {("nn_plus", "vec", tid): (np.stack(finite), np.arange(len(finite))),
                      ("ntk", "vec", tid): (np.stack([kernel]), np.array([0]))}

    runs = {"identity": run("identity", [right, right], right, [True, True]),
            "o3_per_pixel": run("o3_per_pixel", [half, wrong, right], half, [True, True, False])}
    t = S.transform_gaps(runs, y, "identity").set_index("inference")
    assert list(t["transform"]) == ["o3_per_pixel"] * 2 and (t["base"] == "identity").all()
    assert t.loc["nn_plus", "acc"] == 0.25 and t.loc["nn_plus", "base_acc"] == 1.0  # the unaccepted right run left out
    assert t.loc["nn_plus", "delta"] == -0.75 and t.loc["ntk", "delta"] == -0.5
