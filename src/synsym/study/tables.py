"""Derived tables of the appendix studies: scaling-law fits (Fig. S6 and the
DIDE check of Fig. 4), S-Dist along the SO(3)^d path (Fig. S1), and the
Theorem 4.1 invariance report (prediction vs measurement for every cell)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synsym.core import architectures as A
from synsym.core.data import one_hot
from synsym.core.metrics import accuracy, power_law_fit, s_dist

FIT_KEYS = ["study", "inference", "architecture", "transform"]
# The fits' error is 1 - this column, the test accuracy at the best validation step (Fig. 4 plots it too).
CURVE_METRIC = "test_acc"


def _alphas(m: np.ndarray, err: np.ndarray, mse_: np.ndarray, suffix: str = "") -> dict[str, float]:
    """Power-law exponents of error and MSE over m, with standard errors and the half-range slopes."""
    out = {}
    for name, y in (("err", err), ("mse", mse_)):
        y = np.clip(y, 1e-12, None)
        out[f"alpha_{name}{suffix}"], se = power_law_fit(m, y)
        if suffix:
            continue
        out[f"alpha_{name}_se"] = se
        half = (len(m) + 1) // 2
        out[f"alpha_{name}_small_m"] = power_law_fit(m[:half], y[:half])[0] if half >= 2 else np.nan
        out[f"alpha_{name}_large_m"] = power_law_fit(m[-half:], y[-half:])[0] if half >= 2 else np.nan
    return out


def scaling_fits(df: pd.DataFrame) -> pd.DataFrame:
    """Power-law exponents of test error and MSE over n_train for every curve.

    alpha_* over all sizes (with standard errors), and the DIDE check of Fig. 4:
    alpha fitted separately on the smaller and the larger half of the sizes
    (data improves data efficiency when the large-m slope is steeper). Kernel curves hold one
    ridge, picked at the largest size (``ridge``); ``alpha_*_repick`` is what re-picking the
    ridge on validation at every size would give instead (NaN for finite nets).
    """
    rows = []
    ok = df[(df["status"] == "ok") & (df["inference"].isin(A.KERNEL_INFERENCES) | df["accepted"].astype(bool))]
    for key, g in ok.groupby(FIT_KEYS):
        cols = [CURVE_METRIC, "test_mse", "test_acc_repick", "test_mse_repick"]
        g = g.reindex(columns=["n_train", "ridge", *cols])  # tables from before the repick columns fit too
        agg = g.groupby("n_train")[cols].mean().sort_index()
        m = agg.index.values
        ridges = sorted(set(g["ridge"].dropna()))
        row = dict(zip(FIT_KEYS, key), metric=CURVE_METRIC, n_sizes=len(m), m_min=int(m.min()), m_max=int(m.max()),
                   ridge=",".join(f"{r:g}" for r in ridges) or None)
        row.update(_alphas(m, 1 - agg[CURVE_METRIC].values, agg["test_mse"].values))
        repick = agg["test_acc_repick"].notna().all()
        row.update(_alphas(m, 1 - agg["test_acc_repick"].values, agg["test_mse_repick"].values, "_repick") if repick
                   else {"alpha_err_repick": np.nan, "alpha_mse_repick": np.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def ridge_wins(tables: dict[str, pd.DataFrame], ridges: list[float]) -> pd.DataFrame:
    """How often each ridge wins validation, per study and kind: the grid's picks, and on learning
    curves the ridge each size picks for itself (``ridge_repick``). A ridge outside the configured
    grid is the ridgeless limit (synsym.ntk.regression.RIDGELESS)."""
    rows = []
    for study, df in tables.items():
        k = df[df["inference"].isin(A.KERNEL_INFERENCES) & (df["status"] == "ok")]
        col = "ridge_repick" if k["ridge_repick"].notna().any() else "ridge"
        for kind, g in k.groupby("inference"):
            picks = g[col].dropna()
            labels = picks.map(lambda r: f"{r:g}" if r in ridges else "ridgeless")
            for label, n in labels.value_counts().items():
                rows.append({"study": study, "inference": kind, "picked_by": col, "ridge": label, "wins": int(n),
                             "share": n / len(picks)})
    return pd.DataFrame(rows, columns=["study", "inference", "picked_by", "ridge", "wins", "share"])


SDIST_VALUES = ("ensemble_test_acc", "ensemble_test_mse", "sdist_to_gap", "sdist_to_vec_ntk")


def sdist_table(preds: dict[tuple, np.ndarray], y_test: np.ndarray, accepted: dict[tuple, np.ndarray] | None = None
                ) -> pd.DataFrame:
    """S-Dist(VEC_n^{tau_t}, GAP_n) and S-Dist(VEC_n^{tau_t}, VEC_inf) along the path (App. E).

    ``preds`` maps (architecture, inference, width, t) to per-seed test predictions (seeds,
    n_test, 10); kernel predictions have width None, and GAP_n, the reference, is trained on the
    clean data (t None). ``accepted`` maps the same keys to which seeds reached 95% training
    accuracy: ensembles average those only (the paper's successful runs), and each point reports
    its ensemble sizes.
    """
    def runs(key: tuple) -> np.ndarray | None:
        p = preds.get(key)
        if p is None or accepted is None or key not in accepted:
            return p
        return p[np.asarray(accepted[key], dtype=bool)]

    rows = []
    for (arch, inf, width, t), _ in sorted(preds.items(), key=lambda kv: str(kv[0])):
        if arch != "vec" or inf == "ntk":
            continue
        p = runs((arch, inf, width, t))
        gap = runs(("gap", inf, width, None))
        ntk = preds.get(("vec", "ntk", None, t))
        if len(p) == 0:  # no accepted run: the point is missing, not a value
            rows.append({"inference": inf, "width": width, "t": t, "ensemble_size": 0,
                         "gap_ensemble_size": 0 if gap is None else len(gap), **dict.fromkeys(SDIST_VALUES, np.nan)})
            continue
        ens = p.mean(axis=0)
        rows.append({
            "inference": inf, "width": width, "t": t, "ensemble_size": len(p),
            "gap_ensemble_size": 0 if gap is None else len(gap),
            "ensemble_test_acc": accuracy(ens, y_test),
            "ensemble_test_mse": float(np.mean((ens - one_hot(y_test)) ** 2)),
            "sdist_to_gap": s_dist(p, gap) if gap is not None and len(gap) else np.nan,
            "sdist_to_vec_ntk": s_dist(p, ntk) if ntk is not None else np.nan,
        })
    return pd.DataFrame(rows)


def paired_gap(hit_a: np.ndarray, hit_b: np.ndarray) -> dict[str, float]:
    """The accuracy difference a - b (``delta``) of two sets of runs scored on the same test images, and its noise.

    ``hit_a`` (runs_a, n_test) and ``hit_b`` (runs_b, n_test) are per-image correctness (0/1) of each run
    (finite-net seeds, kernel seeds). The gap is paired per image: ``se_test`` is the standard error of
    the mean per-image difference of the runs' average correctness (both sides scored on one test set);
    ``se_runs`` the standard error of the difference of the two sides' mean run accuracies, the init noise of
    each side with more than one run (a kernel's single run adds none). ``se`` adds them in quadrature, so a
    gap beyond 2 se is beyond the test set's and the seeds' noise alike.
    """
    a, b = np.asarray(hit_a, dtype=float), np.asarray(hit_b, dtype=float)
    d = a.mean(axis=0) - b.mean(axis=0)
    se_test = float(d.std(ddof=1) / np.sqrt(d.size))
    var = [h.mean(axis=1).var(ddof=1) / len(h) if len(h) > 1 else 0.0 for h in (a, b)]
    se_runs = float(np.sqrt(sum(var)))
    return {"delta": float(d.mean()), "se_test": se_test, "se_runs": se_runs, "se": float(np.hypot(se_test, se_runs))}


NO_GAP = dict.fromkeys(("delta", "se_test", "se_runs", "se"), np.nan)  # paired_gap's row where a side has no run


def cell_rows(grid: pd.DataFrame, key: tuple[str, str, str]) -> pd.DataFrame:
    """One cell's rows of a merged table; key is (inference, architecture, transform)."""
    inf, arch, tid = key
    return grid[(grid["inference"] == inf) & (grid["architecture"] == arch) & (grid["transform"] == tid)]


def accepted_seeds(cell: pd.DataFrame, seeds: np.ndarray) -> np.ndarray:
    """Which of a finite cell's ``seeds`` (in its predictions' order) were accepted (>= 95% training accuracy)."""
    return cell.set_index("seed").loc[seeds, "accepted"].to_numpy(dtype=bool)


def transform_gaps(runs: dict[str, tuple[pd.DataFrame, dict]], y_test: np.ndarray, base: str) -> pd.DataFrame:
    """Sec. 5.3's comparison across transforms: per (inference, architecture), the accuracy on each transform
    minus on ``base``, paired per test image, from runs that share one split (the synergy presets: one per
    transform, same data settings). ``runs`` maps a transform to (its grid table, its preds as finite_vs_kernel
    takes them); finite cells count their accepted runs only."""
    def hits(grid: pd.DataFrame, preds: dict, key: tuple) -> np.ndarray | None:
        pred, seeds = preds[key]
        if key[0] in A.FINITE_INFERENCES:
            pred = pred[accepted_seeds(cell_rows(grid, key), seeds)]
        return (pred.argmax(-1) == y_test) if len(pred) else None

    rows = []
    base_grid, base_preds = runs[base]
    for tid, (grid, preds) in runs.items():
        if tid == base:
            continue
        for inf, arch, t in sorted(preds):
            if (inf, arch, base) not in base_preds:
                continue
            h, hb = hits(grid, preds, (inf, arch, t)), hits(base_grid, base_preds, (inf, arch, base))
            row = {"inference": inf, "architecture": arch, "transform": t, "base": base,
                   "acc": float(h.mean()) if h is not None else np.nan, "base_acc": float(hb.mean()) if hb is not None else np.nan}
            g = paired_gap(h, hb) if h is not None and hb is not None else NO_GAP
            rows.append({**row, **g, "beyond_noise": bool(abs(g["delta"]) > 2 * g["se"])})
    return pd.DataFrame(rows)


def finite_vs_kernel(grid: pd.DataFrame, preds: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]],
                     y_test: np.ndarray) -> pd.DataFrame:
    """Fig. 2's finite-vs-kernel comparison, per (finite inference, architecture, transform): the accepted
    finite runs' test accuracy (``finite_acc``: at their best validation step, whose predictions are stored)
    against the NTK's and the NNGP's on the same test images, with each difference's paired noise
    (paired_gap) and whether it exceeds twice that. ``finite_acc_best`` is the paper's own number, the best
    test accuracy along training (App. B), which picks its step on the test set and so is not paired.

    ``preds`` maps (inference, architecture, transform) to (per-seed test predictions, their seeds) of the
    grid's cells; ``grid`` says which finite seeds were accepted (>= 95% training accuracy): only those
    count, as in the paper. A cell with no accepted run keeps its row with NaN gaps.
    """
    rows = []
    for (inf, arch, tid), (pred, seeds) in sorted(preds.items()):
        if inf not in A.FINITE_INFERENCES:
            continue
        cell = cell_rows(grid, (inf, arch, tid))
        acc = accepted_seeds(cell, seeds)
        hit = pred[acc].argmax(-1) == y_test
        row = {"inference": inf, "architecture": arch, "transform": tid, "runs": len(seeds), "accepted": int(acc.sum()),
               "n_test": len(y_test), "finite_acc": float(hit.mean()) if acc.any() else np.nan,
               "finite_acc_best": float(cell.set_index("seed").loc[seeds[acc], "test_acc_best"].mean()) if acc.any() else np.nan}
        for kind in A.KERNEL_INFERENCES:
            kp, _ = preds[(kind, arch, tid)]
            k_hit = kp.argmax(-1) == y_test
            row[f"{kind}_acc"] = float(k_hit.mean())
            g = paired_gap(hit, k_hit) if acc.any() else NO_GAP
            row.update({f"{k}_vs_{kind}": v for k, v in g.items()})
            row[f"beyond_noise_vs_{kind}"] = bool(abs(g["delta"]) > 2 * g["se"]) if acc.any() else False
        rows.append(row)
    return pd.DataFrame(rows)


# Relative kernel change above which a kernel is "not invariant", and the one tolerance of every Theorem 4.1
# reuse check (study.symmetry.reuse_check). Invariant pairs measure <= 1.1e-15 in float64 and stay near float32's 1e-7 with
# kernels.precision: float32; pairs the theorem does not cover differ by > 1e-3 (tests/test_kernels.py).
KERNEL_TOL = 1e-6


def kernel_invariance(kern_id: dict[str, np.ndarray], kern_tau: dict[str, np.ndarray], arch: str, kind: str) -> float:
    """max |K(tau X) - K(X)| / max |K(X)| over the train-train and test-train blocks."""
    from synsym.ntk.kernels import kernel_key

    key = kernel_key(arch)
    diffs = []
    for split in ("train_train", "test_train"):
        a, b = kern_tau[f"{split}/{key}/{kind}"], kern_id[f"{split}/{key}/{kind}"]
        diffs.append(np.abs(a - b).max() / np.abs(b).max())
    return float(max(diffs))


def symmetry_report(grid: pd.DataFrame, kernel_diffs: dict[tuple, float], sampled: frozenset = frozenset()) -> pd.DataFrame:
    """Theorem 4.1's prediction vs what we measured, for every (architecture, inference, transform).

    Kernels are deterministic: predicted invariance must show as a relative
    kernel change below KERNEL_TOL, and a broken one above it. For SGD, the
    measurement is |mean acc(tau) - mean acc(identity)| against the seed
    spread: a predicted invariance is contradicted when the gap exceeds
    3 x the pooled standard error plus half a test point's accuracy. Keys in ``sampled`` were measured
    on a block of images against a served kernel (study.symmetry.reuse_check).
    """
    rows = []
    for (arch, tid, inf), diff in kernel_diffs.items():
        pred = A.predicts_invariance(arch, tid, infinite=True)
        measured = diff < KERNEL_TOL
        measure = "rel_kernel_change_sampled" if (arch, tid, inf) in sampled else "rel_kernel_change"
        rows.append({"architecture": arch, "inference": inf, "transform": tid, "predicted_invariant": pred,
                     "measure": measure, "value": diff, "spread": 0.0,
                     "measured_invariant": measured, "agrees": pred == measured})
    fin = grid[grid["inference"].isin(A.FINITE_INFERENCES) & (grid["status"] == "ok")]
    for (arch, inf), g in fin.groupby(["architecture", "inference"]):
        base = g[g["transform"] == "identity"]["test_acc"]
        if base.empty:
            continue
        for tid, gt in g.groupby("transform"):
            if tid == "identity":
                continue
            pred = A.predicts_invariance(arch, tid, infinite=False)
            gap = abs(gt["test_acc"].mean() - base.mean())
            se = np.sqrt(gt["test_acc"].var(ddof=1) / len(gt) + base.var(ddof=1) / len(base)) if len(gt) > 1 else 0.0
            se = 0.0 if np.isnan(se) else float(se)
            tol = 3 * se + 0.5 / max(int(g["n_test"].iloc[0]), 1)
            measured = gap <= tol
            rows.append({"architecture": arch, "inference": inf, "transform": tid, "predicted_invariant": pred,
                         "measure": "acc_gap_to_identity", "value": gap, "spread": se,
                         "measured_invariant": measured,
                         # a difference where none is predicted is a contradiction; equality where a
                         # difference is allowed is not (the theorem permits, it does not force, a change)
                         "agrees": measured or not pred})
    return pd.DataFrame(rows)
