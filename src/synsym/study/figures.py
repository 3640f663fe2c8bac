"""The paper's figures from the merged tables (seaborn, PNG + PDF)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from synsym.core.architectures import ARCHITECTURES, INFERENCE_LABELS  # noqa: E402
from synsym.core.io import atomic_path  # noqa: E402
from synsym.core.transforms import ORDER, TRANSFORMS  # noqa: E402
from synsym.imagenet.registry import FIGURES as IMAGENET_FIGURES  # noqa: E402
from synsym.study.inputs import FIGURE_TABLES  # noqa: E402
from synsym.study.tables import CURVE_METRIC  # noqa: E402  (Fig. 4 plots what the fits use)

ARCH_ORDER = list(ARCHITECTURES)
ARCH_LABELS = {a: s.label for a, s in ARCHITECTURES.items()}
T_LABELS = {t: g for t, (g, _) in TRANSFORMS.items()}


CELL_KEYS = ["study", "inference", "architecture", "transform", "width", "n_train"]


def min_accepted(n_runs: int, fraction: float) -> int:
    """Accepted runs a cell needs to be drawn: ``fraction`` of its runs, rounded up, at least one
    (Fig. 3: 4 of 5, the paper's rule; other figures: any one)."""
    return max(1, math.ceil(fraction * n_runs - 1e-9))


def usable(df: pd.DataFrame, fraction: float = 0.0) -> pd.DataFrame:
    """Runs a figure may show (paper App. B): kernel rows, and the accepted finite runs (95%
    training accuracy) of cells with at least ``min_accepted`` of them. Other cells are missing
    (see :func:`missing`), never drawn from runs that did not fit."""
    if df.empty:
        return df
    kernel = df["inference"].isin(["ntk", "nngp"])
    g = df.groupby(CELL_KEYS, dropna=False)["accepted"]
    enough = g.transform("sum") >= g.transform("size").map(lambda n: min_accepted(n, fraction))
    return df[kernel | (df["accepted"].astype(bool) & enough)]


def missing(df: pd.DataFrame, fraction: float = 0.0) -> pd.DataFrame:
    """The finite cells :func:`usable` leaves out, with their accepted / total run counts."""
    fin = df[~df["inference"].isin(["ntk", "nngp"])]
    if fin.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, "accepted", "runs"])
    c = fin.groupby(CELL_KEYS, dropna=False)["accepted"].agg(accepted="sum", runs="size").reset_index()
    return c[c["accepted"] < c["runs"].map(lambda n: min_accepted(n, fraction))].reset_index(drop=True)


def mark_missing(ax, df: pd.DataFrame, inference: str, fraction: float = 0.0, by_width: bool = False) -> None:
    """A red box in the panel naming every missing cell with its accepted / total runs (when more than
    six are missing: how many per architecture)."""
    m = missing(df, fraction)
    m = m[m["inference"] == inference]
    if not len(m):
        return
    if len(m) > 6:
        cells = df[df["inference"] == inference].groupby("architecture")["transform"].nunique()
        per = m.groupby("architecture").size()
        lines = [f"{len(m)} cells, no value drawn:"] + [
            f"✕ {ARCH_LABELS.get(a, a)}: {per[a]} of {cells.get(a, per[a])} transforms" for a in ARCH_ORDER if a in per]
    else:
        lines = [f"✕ {ARCH_LABELS.get(r.architecture, r.architecture)} {T_LABELS.get(r.transform, r.transform)}"
                 f"{f' w{int(r.width)}' if by_width else ''}: {int(r.accepted)}/{int(r.runs)} accepted"
                 for r in m.itertuples(index=False)]
    ax.text(0.98, 0.98, "missing (too few accepted runs):\n" + "\n".join(lines), transform=ax.transAxes, fontsize=6,
            va="top", ha="right", color="tab:red", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "tab:red"})


# Fig. 3 draws a point only where at least 4 of 5 runs were accepted (the paper's rule).
FIG3_FRACTION = 0.8
# Fig. 4 plots and fits one metric: the test accuracy at the best validation step.


def vec_inf_reference(grid: pd.DataFrame) -> float:
    """Fig. 3's orange line, VEC_inf: the VEC NTK on the identity data. By Theorem 4.1 it is the same
    on O(3)⊗I_d and O(3)^d data; VEC_inf is not invariant to P(3d) and O(3d), so those are excluded."""
    g = grid[(grid["inference"] == "ntk") & (grid["architecture"] == "vec") & (grid["transform"] == "identity")]
    return float(g["test_acc"].mean()) if len(g) else float("nan")


def curve_data(curves: pd.DataFrame) -> pd.DataFrame:
    """Fig. 4's points: accepted runs, NTK and NN+, test error of CURVE_METRIC (what the fits use)."""
    df = usable(curves)
    df = df[df["inference"] != "nngp"].copy()
    return df.assign(test_err=1 - df[CURVE_METRIC])


def save(fig: plt.Figure, outdir: str | Path, name: str) -> list[str]:
    paths = []
    fig.tight_layout()
    for ext in ("png", "pdf"):
        path = Path(outdir) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=130, bbox_inches="tight")
        paths.append(str(path))
    plt.close(fig)
    return paths


def acceptance(df: pd.DataFrame, inference: str) -> str:
    """Per architecture, how many finite runs reached 95% training accuracy (accepted, App. B)
    out of how many ran, e.g. "accepted runs: FCN 10/10, GAP 0/10"; shown in the figure's panel
    because a panel of unaccepted runs (short presets) is not the paper's quantity."""
    d = df[df["inference"] == inference]
    parts = [f"{ARCH_LABELS[a]} {int(g['accepted'].sum())}/{len(g)}" for a, g in d.groupby("architecture")]
    order = {ARCH_LABELS[a]: i for i, a in enumerate(ARCH_ORDER)}
    parts.sort(key=lambda p: order.get(p.rsplit(" ", 1)[0], 99))
    return f"accepted runs (train acc >= 95%): {int(d['accepted'].sum())}/{len(d)}\n" + ", ".join(parts)


def fig2_grid(grid: pd.DataFrame, outdir: str | Path) -> list[str]:
    """Accuracy for 3 inference algorithms x 6 architectures x 5 transforms (Fig. 2); each finite
    panel says how many of its runs were accepted (the others are drawn only where a cell has none)."""
    df = usable(grid).copy()
    df["arch"] = df["architecture"].map(ARCH_LABELS)
    df["group"] = pd.Categorical(df["transform"].map(T_LABELS), [T_LABELS[t] for t in ORDER], ordered=True)
    infs = [i for i in ("ntk", "nn", "nn_plus") if i in set(grid["inference"])]
    fig, axes = plt.subplots(1, max(len(infs), 1), figsize=(5 * max(len(infs), 1), 4), sharey=True, squeeze=False)
    for ax, inf in zip(axes[0], infs):
        if (df["inference"] == inf).any():
            sns.pointplot(
                data=df[df["inference"] == inf], x="group", y="test_acc_best", hue="arch",
                hue_order=[ARCH_LABELS[a] for a in ARCH_ORDER], errorbar="sd", dodge=0.3, ax=ax,
                markersize=4, linewidth=1.2,
            )
        ax.set_title(INFERENCE_LABELS[inf])
        if inf in ("nn", "nn_plus"):
            ax.text(0.02, 0.02, acceptance(grid, inf), transform=ax.transAxes, fontsize=6.5, va="bottom",
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})
            mark_missing(ax, grid, inf)
        ax.set_xlabel("symmetry group of τ applied to the data")
        ax.set_ylabel("test accuracy")
        ax.tick_params(axis="x", rotation=20)
        if ax is not axes[0][-1] and ax.get_legend():
            ax.get_legend().remove()
    if axes[0][-1].get_legend():
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.01, 1), title="architecture")
    fig.suptitle("Performance under spurious symmetries (cf. paper Fig. 2)")
    return save(fig, outdir, "fig2_grid")


def fig2_vs_kernel(t: pd.DataFrame, outdir: str | Path) -> list[str]:
    """Fig. 2's synergy question, cell by cell: each architecture's finite net (accepted runs, test accuracy at
    the best validation step) beside its NTK and NNGP on the same test images, one panel per transform and
    finite inference. Kernel bars carry the test set's binomial error, finite bars the paired noise of their
    difference to the NTK (finite_vs_kernel); a star marks a difference beyond twice that noise."""
    panels = list(t.groupby(["transform", "inference"], sort=False))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.5 * max(len(panels), 1), 3.8), sharey=True, squeeze=False)
    for ax, ((tid, inf), d) in zip(axes[0], panels):
        d = d.set_index("architecture").reindex([a for a in ARCH_ORDER if a in set(d["architecture"])])
        x = np.arange(len(d))
        for j, (col, label) in enumerate((("ntk_acc", "NTK"), ("nngp_acc", "NNGP"), ("finite_acc", INFERENCE_LABELS[inf]))):
            se = d["se_vs_ntk"] if col == "finite_acc" else np.sqrt(d[col] * (1 - d[col]) / d["n_test"])
            ax.bar(x + (j - 1) * 0.27, d[col], 0.27, yerr=se, capsize=2, label=label)
        for i, (_, r) in enumerate(d.iterrows()):
            if r["beyond_noise_vs_ntk"]:
                ax.text(i + 0.27, r["finite_acc"] + r["se_vs_ntk"] + 0.005, "*", ha="center")
            ax.text(i, 0.01, f"{int(r['accepted'])}/{int(r['runs'])}", ha="center", fontsize=7, color="white")
        ax.set_xticks(x, [ARCH_LABELS[a] for a in d.index])
        ax.set_title(f"{T_LABELS.get(tid, tid)}: {INFERENCE_LABELS[inf]} vs kernels")
        ax.set_ylabel("test accuracy")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    n = int(t["n_test"].iloc[0]) if len(t) else 0
    fig.suptitle(f"Finite nets against their kernels on the same {n:,} test images (* beyond 2 sd of the paired difference)")
    return save(fig, outdir, "fig2_vs_kernel")


def fig3_width(width: pd.DataFrame, grid: pd.DataFrame, outdir: str | Path) -> list[str]:
    """VEC_n accuracy vs width on O(3)⊗I_d and O(3)^d data, VEC_inf on the identity data for
    reference (Fig. 3); a point needs 4 of 5 accepted runs (80% of a cell's runs)."""
    df = usable(width, FIG3_FRACTION).copy()
    df["group"] = df["transform"].map(T_LABELS)
    infs = [i for i in ("nn", "nn_plus") if i in set(width["inference"])]
    ntk = vec_inf_reference(grid)
    fig, axes = plt.subplots(1, max(len(infs), 1), figsize=(5 * max(len(infs), 1), 4), sharey=True, squeeze=False)
    for ax, inf in zip(axes[0], infs):
        if (df["inference"] == inf).any():
            sns.lineplot(data=df[df["inference"] == inf], x="width", y="test_acc_best", hue="group",
                         errorbar="sd", marker="o", ax=ax)
        if np.isfinite(ntk):
            ax.axhline(ntk, color="tab:orange", alpha=0.5, ls="--", label="VEC$_\\infty$ (NTK)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width n")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"VEC$_n$, {INFERENCE_LABELS[inf]}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        mark_missing(ax, width, inf, FIG3_FRACTION, by_width=True)
    fig.suptitle("Finite-width symmetry breaking in VEC (cf. paper Fig. 3)")
    return save(fig, outdir, "fig3_width")


def curve_label(inference: str, arch: str, transform: str) -> str:
    return f"{ARCH_LABELS[arch]}, {INFERENCE_LABELS[inference]}, {T_LABELS.get(transform, transform)}"


def fig4_learning_curves(curves: pd.DataFrame, fits: pd.DataFrame, outdir: str | Path) -> list[str]:
    """Test error and MSE vs training-set size, log-log; legend: fitted alpha over all sizes
    and on the small-m / large-m halves (the DIDE check) from the fits table."""
    df = curve_data(curves)
    df["curve"] = [curve_label(*r) for r in df[["inference", "architecture", "transform"]].itertuples(index=False)]
    f = fits[fits["study"] == "curves"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, name, col in ((axes[0], "test_err", "test error (1 - test accuracy at the best validation step)", "err"),
                                  (axes[1], "test_mse", "test MSE", "mse")):
        legend = {}
        for r in f.itertuples(index=False):
            c = curve_label(r.inference, r.architecture, r.transform)
            legend[c] = (f"{c}: α={getattr(r, f'alpha_{col}'):.2f} "
                         f"(small m {getattr(r, f'alpha_{col}_small_m'):.2f}, large m {getattr(r, f'alpha_{col}_large_m'):.2f})")
        d = df.assign(legend=df["curve"].map(legend).fillna(df["curve"]))
        if len(d):
            sns.lineplot(data=d, x="n_train", y=metric, hue="legend", errorbar="sd", marker="o", ax=ax)
        mark_missing(ax, curves, "nn_plus")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled minor ticks overlap on a short axis
        ax.set_xlabel("training set size m")
        ax.set_ylabel(name)
        ax.legend(fontsize=7)
    fig.suptitle("Learning curves (cf. paper Fig. 4)")
    return save(fig, outdir, "fig4_learning_curves")


def make(name: str, tables: dict[str, pd.DataFrame], outdir: str | Path, imagenet: Mapping | None = None) -> list[str]:
    """Draw one figure by name from the merged tables it needs (study.inputs.FIGURE_TABLES, in order; the ImageNet
    half's from imagenet.registry.FIGURES, with the models and transforms of its config section ``imagenet``)."""
    if name in IMAGENET_FIGURES:
        return _imagenet_figure(name, tables, outdir, imagenet["studies"])
    if name not in FIGURE_TABLES:
        raise ValueError(f"unknown figure {name!r}; allowed: {', '.join(FIGURES + tuple(IMAGENET_FIGURES))}")
    draw = {"fig2_grid": fig2_grid, "fig2_vs_kernel": fig2_vs_kernel, "fig3_width": fig3_width,
            "fig4_learning_curves": fig4_learning_curves, "figS1_sdist": figS1_sdist,
            "figS5_uniform_init": figS5_uniform_init, "figS6_scaling": figS6_scaling,
            "symmetry_report": symmetry_heatmap}[name]
    return draw(*[tables[t] for t in FIGURE_TABLES[name]], outdir)


FIGURES = tuple(FIGURE_TABLES)


def _imagenet_figure(name: str, t: dict[str, pd.DataFrame], outdir: str | Path, st: Mapping) -> list[str]:
    if name == "fig5_learning_curves":
        c = st["fig5_curves"]
        return fig5_learning_curves(t["imagenet_final"], t["imagenet_fits"], outdir, c["models"], c["transforms"])
    if name == "fig5_rotated_vs_clean":
        return fig5_rotated_vs_clean(t["imagenet_final"], outdir, st["fig5_families"]["models"])
    if name == "figS3_scaling_vs_rotation":
        c = st["figS3_scaling"]
        return figS3_scaling_vs_rotation(t["imagenet_final"], t["imagenet_fits"], outdir, c["models"], c["transforms"])
    c = st["figS4_dynamics"]
    return figS4_dynamics(t["imagenet_epochs"], outdir, c["models"], c["transforms"])


def figS1_sdist(sd: pd.DataFrame, outdir: str | Path) -> list[str]:
    """Ensemble accuracy, S-Dist to GAP_n and to VEC_inf along the SO(3)^d path (Fig. S1)."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for r in sd.itertuples(index=False):  # ensemble sizes (accepted runs) per point
        axes[0].annotate(f"{r.ensemble_size}", (r.t, getattr(r, "ensemble_test_acc", np.nan)), fontsize=6,
                         textcoords="offset points", xytext=(3, 3))
    for ax, col, name in zip(axes, ("ensemble_test_acc", "sdist_to_gap", "sdist_to_vec_ntk"),
                             ("ensemble test accuracy", "S-Dist(VEC$_n^{τ_t}$, GAP$_n$)",
                              "S-Dist(VEC$_n^{τ_t}$, VEC$_\\infty$)")):
        sns.lineplot(data=sd, x="t", y=col, hue="width", marker="o", ax=ax, palette="viridis")
        ax.set_xlabel("t  (τ_t = exp(-tA) ∈ SO(3)$^d$)")
        ax.set_ylabel(name)
    fig.suptitle("VEC$_n$ along the path from I to O(3)$^d$, NN+ ensembles (cf. paper Fig. S1)")
    return save(fig, outdir, "figS1_sdist")


def figS5_uniform_init(grid: pd.DataFrame, uni: pd.DataFrame, outdir: str | Path) -> list[str]:
    """Gaussian vs variance-matched uniform first layer, identity data (Fig. S5)."""
    u = usable(uni)
    inf = u["inference"].iloc[0] if len(u) else "nn_plus"
    g = usable(grid)
    g = g[(g["inference"] == inf) & (g["transform"] == "identity") & g["architecture"].isin(set(u["architecture"]))]
    df = pd.concat([g.assign(first_layer="Gaussian"), u.assign(first_layer="uniform")], ignore_index=True)
    df["arch"] = df["architecture"].map(ARCH_LABELS)
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(df):
        sns.barplot(data=df, x="arch", y="test_acc_best", hue="first_layer", errorbar="sd", ax=ax,
                    order=[ARCH_LABELS[a] for a in ARCH_ORDER if ARCH_LABELS[a] in set(df["arch"])])
    mark_missing(ax, uni, inf)
    ax.set_ylabel("test accuracy")
    ax.set_xlabel("")
    ax.set_title(f"First-layer initialization, {INFERENCE_LABELS[inf]}, identity data (cf. paper Fig. S5)")
    return save(fig, outdir, "figS5_uniform_init")


def figS6_scaling(sc: pd.DataFrame, fits: pd.DataFrame, outdir: str | Path) -> list[str]:
    """Infinite-width learning curves of every architecture x transform (Fig. S6)."""
    df = sc[sc["inference"] == "ntk"].copy()
    df["arch"] = df["architecture"].map(ARCH_LABELS)
    f = fits[(fits["study"] == "scaling") & (fits["inference"] == "ntk")]
    alpha = {(r.architecture, r.transform): r.alpha_mse for r in f.itertuples(index=False)}
    ts = [t for t in ORDER if t in set(df["transform"])]
    fig, axes = plt.subplots(1, len(ts), figsize=(4 * len(ts), 4), sharey=True, squeeze=False)
    for ax, t in zip(axes[0], ts):
        d = df[df["transform"] == t].copy()
        d["label"] = [f"{ARCH_LABELS[a]} (α={alpha.get((a, t), float('nan')):.2f})" for a in d["architecture"]]
        sns.lineplot(data=d, x="n_train", y="test_mse", hue="label", marker="o", ax=ax, errorbar=None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(T_LABELS[t])
        ax.set_xlabel("training set size m")
        ax.set_ylabel("NTK test MSE")
        ax.legend(fontsize=7)
    fig.suptitle("Infinite-width scaling laws, MSE ~ m^-α (cf. paper Fig. S6)")
    return save(fig, outdir, "figS6_scaling")


def symmetry_heatmap(rep: pd.DataFrame, outdir: str | Path) -> list[str]:
    """Theorem 4.1: predicted vs measured invariance; disagreements in red."""
    rep = rep.copy()
    rep["row"] = [f"{ARCH_LABELS[a]} {INFERENCE_LABELS[i]}" for a, i in zip(rep["architecture"], rep["inference"])]
    rows = [f"{ARCH_LABELS[a]} {INFERENCE_LABELS[i]}" for i in ("ntk", "nngp", "nn", "nn_plus") for a in ARCH_ORDER]
    rows = [r for r in rows if r in set(rep["row"])]
    cols = [t for t in ORDER if t in set(rep["transform"])]
    state = rep.pivot_table(index="row", columns="transform", values="agrees", aggfunc="all").reindex(rows)[cols]
    pred = rep.pivot_table(index="row", columns="transform", values="predicted_invariant", aggfunc="all")
    pred = pred.reindex(rows)[cols]
    val = rep.pivot_table(index="row", columns="transform", values="value", aggfunc="max").reindex(rows)[cols]
    code = np.where(~state.astype(bool), 0, np.where(pred.astype(bool), 2, 1))
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(cols), 0.4 * len(rows) + 1.5))
    from matplotlib.colors import ListedColormap

    sns.heatmap(code, cmap=ListedColormap(["#d62728", "#c7c7c7", "#2ca02c"]), vmin=0, vmax=2, cbar=False,
                annot=val.map(lambda v: f"{v:.1e}" if v < 0.01 else f"{v:.3f}").values, fmt="",
                annot_kws={"fontsize": 7}, xticklabels=[T_LABELS[c] for c in cols], yticklabels=rows, ax=ax,
                linewidths=0.5, linecolor="white")
    ax.set_title("Theorem 4.1: green = invariance predicted and measured, grey = not predicted,\n"
                 "red = theory and measurement disagree; numbers: kernel change / accuracy gap to identity",
                 fontsize=9)
    return save(fig, outdir, "symmetry_report")


# ----------------------------------------------------------------------------- ImageNet (Sec. 6.2, App. F)
IN_LABELS = {"identity": "clean", "o3_shared": "O(3)⊗I_d", "o3_per_pixel": "O(3)^d-rotated", "perm_3d": "P(3d)"}


def _curve_panel(ax, final: pd.DataFrame, fits: pd.DataFrame, models: list[str], transforms: list[str]) -> None:
    """Top-1 error vs m (log-log) per (model, transform), with the two fitted segments and the cusp."""
    sel = final["model"].isin(models) & final["transform"].isin(transforms)
    for (model, t), g in final[sel].groupby(["model", "transform"]):
        g = g.groupby(["size_index", "m"], as_index=False)["val_error"].mean().sort_values("m")
        f = fits[(fits["model"] == model) & (fits["transform"] == t)]
        label = f"{model}, {IN_LABELS.get(t, t)}"
        if len(f):
            r = f.iloc[0]
            label += f": α small m {r['alpha_small']:.2f}, large m {r['alpha_large']:.2f}"
            cusp = g[g["size_index"] == r["cusp_index"]]
            if len(cusp):
                ax.axvline(float(cusp["m"].iloc[0]), color="0.8", lw=0.8, ls=":")
        ax.plot(g["m"], g["val_error"], "o-", ms=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training images m_i")
    ax.set_ylabel("top-1 error (val)")
    ax.legend(fontsize=7)


def fig5_learning_curves(final: pd.DataFrame, fits: pd.DataFrame, outdir: str | Path, models: list[str],
                         transforms: list[str]) -> list[str]:
    """Fig. 5 left: learning curves of clean vs O(3)^d-rotated ImageNet; slopes fitted on
    i >= 6 (small m) and i < 6 (large m); dotted line at m_6, where the paper sees a cusp."""
    fig, ax = plt.subplots(figsize=(7, 5))
    _curve_panel(ax, final, fits, models, transforms)
    ax.set_title("ImageNet learning curves (cf. paper Fig. 5 left)")
    return save(fig, outdir, "fig5_learning_curves")


def fig5_rotated_vs_clean(final: pd.DataFrame, outdir: str | Path, models: list[str]) -> list[str]:
    """Fig. 5 right: top-1 accuracy on O(3)^d-rotated (x) vs clean (y) data, one point per model."""
    full = final[(final["size_index"] == 0) & final["model"].isin(models)]
    acc = full.groupby(["family", "model", "transform"], as_index=False)["val_top1"].mean()
    wide = acc.pivot_table(index=["family", "model"], columns="transform", values="val_top1").reset_index()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if {"identity", "o3_per_pixel"} <= set(wide.columns):
        for fam, g in wide.groupby("family"):
            ax.plot(g["o3_per_pixel"], g["identity"], "o", label=fam)
            for r in g.itertuples(index=False):
                ax.annotate(r.model, (r.o3_per_pixel, r.identity), fontsize=6)
        lo = float(np.nanmin(wide[["o3_per_pixel", "identity"]].to_numpy()))
        ax.plot([lo, 1], [lo, 1], color="0.7", lw=0.8, ls="--")
    ax.set_xlabel("top-1, O(3)^d-rotated")
    ax.set_ylabel("top-1, clean")
    ax.legend(fontsize=8)
    ax.set_title("Rotated vs clean (cf. paper Fig. 5 right)")
    return save(fig, outdir, "fig5_rotated_vs_clean")


def figS3_scaling_vs_rotation(final: pd.DataFrame, fits: pd.DataFrame, outdir: str | Path,
                              models: list[str], transforms: list[str]) -> list[str]:
    """Fig. S3: one learning-curve panel per model, clean vs rotated."""
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        _curve_panel(ax, final, fits, [model], transforms)
        ax.set_title(model)
    fig.suptitle("Scaling vs rotation (cf. paper Fig. S3)")
    return save(fig, outdir, "figS3_scaling_vs_rotation")


def figS4_dynamics(epochs: pd.DataFrame, outdir: str | Path, models: list[str], transforms: list[str]) -> list[str]:
    """Fig. S4: val top-1 vs epoch, one panel per transform, one line per model, mean over seeds."""
    d = epochs[(epochs["size_index"] == 0) & epochs["model"].isin(models) & epochs["transform"].isin(transforms)]
    fig, axes = plt.subplots(1, len(transforms), figsize=(5 * len(transforms), 4), squeeze=False, sharey=True)
    for ax, t in zip(axes[0], transforms):
        sns.lineplot(data=d[d["transform"] == t], x="epoch", y="val_top1", hue="model", hue_order=models,
                     errorbar="sd", ax=ax)
        ax.set_title(IN_LABELS.get(t, t))
        ax.set_ylabel("val top-1")
    fig.suptitle("Learning dynamics (cf. paper Fig. S4)")
    return save(fig, outdir, "figS4_dynamics")


def figS7_samples(rows: dict[str, np.ndarray], outdir: str | Path) -> list[str]:
    """Figs. S7-S9 in one: each row a set of images (N, H, W, 3) in [0, 1], titled by its key."""
    return image_rows(rows, outdir, "figS7_samples")


def transform_views(image: np.ndarray, mean: np.ndarray, std: np.ndarray, taus: dict) -> dict[str, np.ndarray]:
    """One (H, W, 3) uint8 image under each element ``taus[label]`` (a ``core.transforms.Transform``).

    The study applies tau to per-channel standardized pixels, so that is what is shown: tau acts
    on (x - mean) / std, the result is mapped back with * std + mean and clipped to [0, 1]. A
    rotated 3-vector is not an RGB colour, so clipping (not rescaling) keeps the untouched parts of
    the picture, and the identity panel, true to the original. Each value is a (1, H, W, 3) row.
    """
    x = (image.astype(np.float64)[None] / 255.0 - mean) / std
    return {label: np.clip(tau.apply(x) * std + mean, 0.0, 1.0) for label, tau in taus.items()}


def image_rows(rows: dict[str, np.ndarray], outdir: str | Path, name: str, across: bool = False) -> list[str]:
    """Rows of images (N, H, W, 3) in [0, 1], each titled by its key; ``across``: one image per
    key, laid out in a single row (Fig. 1, Fig. S2)."""
    if across:
        fig, axes = plt.subplots(1, len(rows), figsize=(2.0 * len(rows), 2.3), squeeze=False)
        for ax, (title, imgs) in zip(axes[0], rows.items()):
            ax.imshow(imgs[0], interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        return save(fig, outdir, name)
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.8 * len(rows)), squeeze=False)
    for r, (title, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(imgs):
                ax.imshow(np.clip(imgs[c], 0, 1))
        axes[r][0].set_title(title, fontsize=8, loc="left")
    return save(fig, outdir, name)
