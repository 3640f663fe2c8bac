"""Kernel regression at t = infinity (Eq. 6): the NNGP/NTK posterior mean on the test set,
with a ridge picked on validation accuracy."""

from __future__ import annotations

import numpy as np

from synsym.core.data import one_hot
from synsym.core.metrics import accuracy, mse
from synsym.ntk.kernels import kernel_key


def solve(k_tt: np.ndarray, k_st: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Kernel regression K_st (K_tt + eps I)^-1 Y with eps = ridge * trace(K_tt) / n (Cholesky, float64)."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    n = len(k_tt)
    eps = ridge * np.trace(k_tt) / n
    try:
        c = cho_factor(k_tt + eps * np.eye(n), lower=True)
    except LinAlgError:
        raise np.linalg.LinAlgError(
            f"kernel matrix ({n}x{n}) is not positive definite with ridge {ridge:g}"
        ) from None
    return k_st @ cho_solve(c, y)


def regress(
    kern: dict[str, np.ndarray],
    arch_id: str,
    kind: str,
    y_train: np.ndarray,
    y_val: np.ndarray,
    y_test: np.ndarray,
    ridges: list[float],
    m: int | None = None,
) -> dict[str, float | np.ndarray]:
    """NTK/NNGP regression at t = infinity, ridge chosen on validation accuracy.

    ``m`` uses the first m training images: the sub-matrix of the one kernel
    serves every learning-curve size.
    """
    key = kernel_key(arch_id)
    m = len(y_train) if m is None else m
    k_tt = kern[f"train_train/{key}/{kind}"][:m, :m]
    k_vt = kern[f"val_train/{key}/{kind}"][:, :m]
    k_st = kern[f"test_train/{key}/{kind}"][:, :m]
    y = one_hot(y_train[:m])
    best, errors = None, []
    for r in ridges:
        try:
            f_val = solve(k_tt, k_vt, y, r)
        except np.linalg.LinAlgError as e:
            errors.append(str(e))
            continue
        score = (accuracy(f_val, y_val), -mse(f_val, one_hot(y_val)))
        if best is None or score > best[0]:
            best = (score, r)
    if best is None:
        raise np.linalg.LinAlgError(f"{arch_id}/{kind}: no ridge in {ridges} gives a positive-definite solve: {errors[-1]}")
    r = best[1]
    f_test = solve(k_tt, k_st, y, r)
    return {
        "ridge": r,
        "val_acc": best[0][0],
        "train_acc": accuracy(solve(k_tt, k_tt, y, r), y_train[:m]),
        "test_acc": accuracy(f_test, y_test),
        "test_mse": mse(f_test, one_hot(y_test)),
        "test_pred": f_test,
    }
