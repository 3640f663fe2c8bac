"""The paper's figures from the merged tables (seaborn, PNG + PDF)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from synsym.architectures import ARCHITECTURES, INFERENCE_LABELS  # noqa: E402
from synsym.io import atomic_path  # noqa: E402
from synsym.metrics import power_law_fit  # noqa: E402
from synsym.transforms import ORDER, TRANSFORMS  # noqa: E402

ARCH_ORDER = list(ARCHITECTURES)
ARCH_LABELS = {a: s.label for a, s in ARCHITECTURES.items()}
T_LABELS = {t: g for t, (g, _) in TRANSFORMS.items()}


CELL_KEYS = ["study", "inference", "architecture", "transform", "width", "n_train"]


def usable(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that count: kernel rows, and finite runs that reached 95% training accuracy
    (paper App. B). A cell none of whose runs was accepted (short presets) shows its
    runs that did not diverge instead, so that no cell silently vanishes from a plot."""
    if df.empty:
        return df
    kernel = df["inference"].isin(["ntk", "nngp"])
    any_accepted = df.groupby(CELL_KEYS, dropna=False)["accepted"].transform("any")
    fallback = ~any_accepted & (df["status"] == "ok")
    return df[kernel | df["accepted"] | fallback]


def save(fig: plt.Figure, outdir: str | Path, name: str) -> list[str]:
    paths = []
    for ext in ("png", "pdf"):
        path = Path(outdir) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=130, bbox_inches="tight")
        paths.append(str(path))
    plt.close(fig)
    return paths


def fig2_grid(grid: pd.DataFrame, outdir: str | Path) -> list[str]:
    """Accuracy for 3 inference algorithms x 6 architectures x 5 transforms (Fig. 2)."""
    df = usable(grid).copy()
    df["arch"] = df["architecture"].map(ARCH_LABELS)
    df["group"] = pd.Categorical(df["transform"].map(T_LABELS), [T_LABELS[t] for t in ORDER], ordered=True)
    infs = [i for i in ("ntk", "nn", "nn_plus") if i in set(df["inference"])]
    fig, axes = plt.subplots(1, max(len(infs), 1), figsize=(5 * max(len(infs), 1), 4), sharey=True, squeeze=False)
    for ax, inf in zip(axes[0], infs):
        sns.pointplot(
            data=df[df["inference"] == inf], x="group", y="test_acc_best", hue="arch",
            hue_order=[ARCH_LABELS[a] for a in ARCH_ORDER], errorbar="sd", dodge=0.3, ax=ax,
            markersize=4, linewidth=1.2,
        )
        ax.set_title(INFERENCE_LABELS[inf])
        ax.set_xlabel("symmetry group of τ applied to the data")
        ax.set_ylabel("test accuracy")
        ax.tick_params(axis="x", rotation=20)
        if ax is not axes[0][-1] and ax.get_legend():
            ax.get_legend().remove()
    fig.suptitle("Performance under spurious symmetries (cf. paper Fig. 2)")
    return save(fig, outdir, "fig2_grid")


def fig3_width(width: pd.DataFrame, grid: pd.DataFrame, outdir: str | Path) -> list[str]:
    """VEC_n accuracy vs width on O(3)⊗I_d and O(3)^d data, NTK line for reference (Fig. 3)."""
    df = usable(width).copy()
    df["group"] = df["transform"].map(T_LABELS)
    infs = [i for i in ("nn", "nn_plus") if i in set(df["inference"])]
    ntk = usable(grid)
    ntk = ntk[(ntk["inference"] == "ntk") & (ntk["architecture"] == "vec")]["test_acc"].mean()
    fig, axes = plt.subplots(1, max(len(infs), 1), figsize=(5 * max(len(infs), 1), 4), sharey=True, squeeze=False)
    for ax, inf in zip(axes[0], infs):
        sns.lineplot(data=df[df["inference"] == inf], x="width", y="test_acc_best", hue="group",
                     errorbar="sd", marker="o", ax=ax)
        if np.isfinite(ntk):
            ax.axhline(ntk, color="tab:orange", alpha=0.5, ls="--", label="VEC$_\\infty$ (NTK)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width n")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"VEC$_n$, {INFERENCE_LABELS[inf]}")
        ax.legend(fontsize=8)
    fig.suptitle("Finite-width symmetry breaking in VEC (cf. paper Fig. 3)")
    return save(fig, outdir, "fig3_width")


def curve_label(inference: str, arch: str, transform: str) -> str:
    return f"{ARCH_LABELS[arch]}, {INFERENCE_LABELS[inference]}, {T_LABELS.get(transform, transform)}"


def fit_slopes(df: pd.DataFrame, metric: str) -> dict[str, float]:
    """Power-law exponent alpha of error ~ m^-alpha for each curve."""
    out = {}
    for label, g in df.groupby("curve"):
        agg = g.groupby("n_train")[metric].mean()
        out[label] = power_law_fit(agg.index.values, agg.values)[0]
    return out


def fig4_learning_curves(curves: pd.DataFrame, outdir: str | Path) -> list[str]:
    """Test error and MSE vs training-set size, log-log, slopes in the legend (Fig. 4)."""
    df = usable(curves)
    df = df[df["inference"] != "nngp"].copy()
    df["curve"] = [curve_label(*r) for r in df[["inference", "architecture", "transform"]].itertuples(index=False)]
    df["test_err"] = 1 - df["test_acc_best"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, name in ((axes[0], "test_err", "test error (1 - accuracy)"), (axes[1], "test_mse", "test MSE")):
        slopes = fit_slopes(df, metric)
        d = df.assign(legend=df["curve"].map({c: f"{c} (α={a:.2f})" for c, a in slopes.items()}))
        sns.lineplot(data=d, x="n_train", y=metric, hue="legend", errorbar="sd", marker="o", ax=ax)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training set size m")
        ax.set_ylabel(name)
        ax.legend(fontsize=7)
    fig.suptitle("Learning curves (cf. paper Fig. 4)")
    return save(fig, outdir, "fig4_learning_curves")


def make(name: str, tables: dict[str, pd.DataFrame], outdir: str | Path) -> list[str]:
    """Draw one figure by name from the merged tables it needs."""
    if name == "fig2_grid":
        return fig2_grid(tables["grid"], outdir)
    if name == "fig3_width":
        return fig3_width(tables["width"], tables["grid"], outdir)
    if name == "fig4_learning_curves":
        return fig4_learning_curves(tables["curves"], outdir)
    raise ValueError(f"unknown figure {name!r}; allowed: fig2_grid, fig3_width, fig4_learning_curves")
