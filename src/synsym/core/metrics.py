"""Scores shared by kernel regression and SGD."""

from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose largest logit is the label."""
    return float(np.mean(np.argmax(pred, axis=-1) == labels))


def mse(pred: np.ndarray, targets: np.ndarray) -> float:
    """Mean squared error per logit: mean over points and the 10 outputs of (f - y)^2."""
    return float(np.mean((pred - targets) ** 2))


def s_dist(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """S-Dist (App. E, Eq. S15/S16): mean over test x of |E A1(x) - E A2(x)|^2.

    Either argument may carry a leading ensemble axis (seeds), averaged first.
    """
    a = pred_a.mean(axis=0) if pred_a.ndim == 3 else pred_a
    b = pred_b.mean(axis=0) if pred_b.ndim == 3 else pred_b
    return float(np.mean(np.sum((a - b) ** 2, axis=-1)))


def power_law_fit(m: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    """Fit err ~ c m^-alpha in log-log; return (alpha, its standard error)."""
    x, y = np.log(np.asarray(m, float)), np.log(np.asarray(err, float))
    if len(x) < 2:
        return float("nan"), float("nan")
    coef, cov = np.polyfit(x, y, 1, cov=True) if len(x) > 2 else (np.polyfit(x, y, 1), np.full((2, 2), np.nan))
    return float(-coef[0]), float(np.sqrt(cov[0, 0]))
