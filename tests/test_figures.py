"""What the figures show is what the paper's figures show: the reference line, which runs count,
one metric per figure, and S-Dist's reference (synthetic tables, checked by hand)."""

import matplotlib.axes
import numpy as np
import pandas as pd
import pytest

from synsym.study import figures as F
from synsym.study import tables as S


def rows(inference, arch, transform, accepted, acc=0.5, width=8, n=100, study="grid"):
    """One cell's runs: one row per entry of ``accepted``."""
    return [{"study": study, "inference": inference, "architecture": arch, "transform": transform,
             "width": None if inference in ("ntk", "nngp") else width, "n_train": n, "seed": i, "accepted": a,
             "status": "ok", "test_acc": acc + 0.01 * i, "test_acc_best": acc + 0.1, "test_mse": 0.1}
            for i, a in enumerate(accepted)]


def test_fig3_reference_line_is_vec_inf_on_the_identity_data(monkeypatch, tmp_path):
    """VEC_inf is invariant to O(3)^d (so identity = O(3)⊗I_d = O(3)^d) but not to P(3d) or O(3d)."""
    grid = pd.DataFrame([r for t, acc in (("identity", 0.6), ("o3_shared", 0.6), ("o3_per_pixel", 0.6),
                                          ("perm_3d", 0.1), ("o_3d", 0.1))
                         for r in rows("ntk", "vec", t, [True], acc)])
    assert F.vec_inf_reference(grid) == 0.6  # the mean over all five would be 0.4
    width = pd.DataFrame(rows("nn", "vec", "o3_shared", [True] * 5, study="width"))
    lines = []
    real = matplotlib.axes.Axes.axhline
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", lambda self, y=0, *a, **k: lines.append(y) or real(self, y, *a, **k))
    F.fig3_width(width, grid, tmp_path)
    assert lines == [0.6]


def test_a_cell_without_enough_accepted_runs_is_missing_not_drawn():
    df = pd.DataFrame(rows("nn", "gap", "identity", [False, False]) + rows("nn", "vec", "identity", [True, False])
                      + rows("ntk", "gap", "identity", [True]))
    u = F.usable(df)
    assert set(zip(u["inference"], u["architecture"])) == {("nn", "vec"), ("ntk", "gap")}
    assert u["accepted"].all()  # the unaccepted VEC run is not averaged either
    m = F.missing(df)
    assert m[["architecture", "accepted", "runs"]].values.tolist() == [["gap", 0, 2]]


def test_fig3_needs_four_of_five_accepted_runs():
    df = pd.DataFrame(rows("nn", "vec", "o3_shared", [True, True, True, True, False], width=8, study="width")
                      + rows("nn", "vec", "o3_shared", [True, True, True, False, False], width=16, study="width"))
    assert set(F.usable(df, F.FIG3_FRACTION)["width"]) == {8}
    assert F.missing(df, F.FIG3_FRACTION)[["width", "accepted", "runs"]].values.tolist() == [[16, 3, 5]]
    assert [F.min_accepted(n, F.FIG3_FRACTION) for n in (5, 2, 1, 10)] == [4, 2, 1, 8]


def test_fig4_plots_the_metric_its_exponents_are_fitted_on():
    curves = pd.DataFrame([r for m, acc in ((100, 0.3), (200, 0.4), (400, 0.5))
                           for r in rows("nn_plus", "vec", "identity", [True, True], acc, n=m, study="curves")])
    d = F.curve_data(curves)
    np.testing.assert_array_equal(d["test_err"], 1 - d["test_acc"])  # not the best test accuracy along training
    fits = S.scaling_fits(curves)
    assert (fits["metric"] == "test_acc").all() and F.CURVE_METRIC == S.CURVE_METRIC == "test_acc"
    err = 1 - curves.groupby("n_train")["test_acc"].mean()
    slope = -np.polyfit(np.log(err.index.values), np.log(err.values), 1)[0]
    np.testing.assert_allclose(fits["alpha_err"].iloc[0], slope, rtol=1e-10)


def test_sdist_reference_is_gap_on_clean_data_and_ensembles_are_accepted_runs():
    g = np.random.default_rng(0)
    y = g.integers(0, 10, 30)
    p = lambda: g.standard_normal((3, 30, 10))  # noqa: E731
    vec, gap_clean, gap_tau, ntk = p(), p(), p(), p()[:1]
    preds = {("vec", "nn_plus", 8, 1.0): vec, ("gap", "nn_plus", 8, None): gap_clean,
             ("gap", "nn_plus", 8, 1.0): gap_tau, ("vec", "ntk", None, 1.0): ntk}
    acc = {("vec", "nn_plus", 8, 1.0): np.array([True, False, True]), ("gap", "nn_plus", 8, None): np.array([True, True, False])}
    t = S.sdist_table(preds, y, acc)
    assert len(t) == 1
    r = t.iloc[0]
    from synsym.core.metrics import s_dist

    assert r["sdist_to_gap"] == s_dist(vec[[0, 2]], gap_clean[[0, 1]]) != s_dist(vec[[0, 2]], gap_tau[[0, 1]])
    assert (r["ensemble_size"], r["gap_ensemble_size"]) == (2, 2)
    assert r["ensemble_test_acc"] == (vec[[0, 2]].mean(0).argmax(-1) == y).mean()


def test_sdist_points_without_accepted_runs_are_missing_and_the_figure_still_draws(tmp_path):
    g = np.random.default_rng(0)
    preds = {("vec", "nn_plus", 8, t): g.standard_normal((2, 5, 10)) for t in (0.0, 1.0)}
    preds[("gap", "nn_plus", 8, None)] = g.standard_normal((2, 5, 10))
    acc = {k: np.array([False, False]) for k in preds}
    t = S.sdist_table(preds, np.arange(5), acc)
    assert t["ensemble_size"].tolist() == [0, 0] and t[list(S.SDIST_VALUES)].isna().all().all()
    assert all(p.endswith((".png", ".pdf")) for p in F.figS1_sdist(t, tmp_path))


def test_transform_views_show_tau_on_standardized_pixels():
    """Fig. 1 / S2: identity gives back the image; O(3)⊗I_d keeps each standardized pixel's norm
    (before clipping); tau acts after standardization, not on raw [0, 1] colours."""
    from synsym.core import transforms as T

    gen = np.random.default_rng(0)
    image = gen.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.25, 0.2, 0.3])
    taus = {t: T.make(t, 4, 0, 0) for t in ("identity", "o3_shared", "o_3d")}
    v = F.transform_views(image, mean, std, taus)
    assert set(v) == set(taus) and all(x.shape == (1, 4, 4, 3) for x in v.values())
    np.testing.assert_allclose(v["identity"][0], image / 255.0, atol=1e-12)
    z = (image / 255.0 - mean) / std
    want = np.clip(z @ taus["o3_shared"].pixel[0, 0].T * std + mean, 0, 1)
    np.testing.assert_allclose(v["o3_shared"][0], want, atol=1e-12)
    assert v["o_3d"].min() >= 0 and v["o_3d"].max() <= 1 and not np.allclose(v["o_3d"][0], image / 255.0)


@pytest.mark.slow
def test_transform_figures_draw_every_panel(tmp_path, monkeypatch, mini_archive):
    """The rule's job on the real (mini) archive: one 32x32 panel per grid transform and per t."""
    import matplotlib.axes

    from synsym.study import cells

    url, md5 = mini_archive
    spec = {"global_seed": 0, "seed": 0, "ts": [0.0, 0.5, 1.0],
            "data": {"url": url, "md5": md5, "dir": str(tmp_path / "data")}}
    panels = []
    real = matplotlib.axes.Axes.imshow
    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", lambda self, x, *a, **k: panels.append(x.shape) or real(self, x, *a, **k))
    out = cells.transform_figures(spec, str(tmp_path / "figs"))
    assert panels == [(32, 32, 3)] * 8
    assert sorted(p.rsplit("/", 1)[1] for p in out) == ["fig1_transforms.pdf", "fig1_transforms.png",
                                                        "figS2_so3_path.pdf", "figS2_so3_path.png"]
