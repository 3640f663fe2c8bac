"""Kernel regression at t = infinity (Eq. 6): the NNGP/NTK posterior mean on the test set,
with a ridge picked on validation accuracy."""

from __future__ import annotations

import numpy as np

from synsym.core.data import one_hot
from synsym.core.metrics import accuracy, mse
from synsym.ntk.kernels import kernel_key


def _factor(k_tt: np.ndarray, ridge: float, device: str = "cpu", lib: str | None = None):
    """Cholesky factor of K_tt + eps I, eps = ridge * trace(K_tt) / n, in float64. On the CPU one
    m x m copy is factored in place (LAPACK), so peak memory is twice K_tt; with ``device: cuda``
    torch factors it on the GPU (``lib="torch"`` forces that path, on any device, for tests)."""
    n = len(k_tt)
    eps = ridge * np.trace(k_tt) / n
    if (lib or ("scipy" if device == "cpu" else "torch")) == "torch":
        import torch

        a = torch.tensor(k_tt, device=device)  # one copy on the device, its diagonal shifted in place
        a.diagonal().add_(eps)
        c, info = torch.linalg.cholesky_ex(a)
        if int(info) != 0:
            raise np.linalg.LinAlgError(f"kernel matrix ({n}x{n}) is not positive definite with ridge {ridge:g}")
        return ("torch", c)
    from scipy.linalg import LinAlgError, cho_factor

    a = np.array(k_tt, order="F")  # LAPACK's order: factored in place, no second copy
    a[np.diag_indices(n)] += eps
    try:
        return ("scipy", cho_factor(a, lower=True, overwrite_a=True, check_finite=False))
    except LinAlgError:
        raise np.linalg.LinAlgError(f"kernel matrix ({n}x{n}) is not positive definite with ridge {ridge:g}") from None


def _weights(factor, y: np.ndarray) -> np.ndarray:
    """(K_tt + eps I)^-1 Y from a factor."""
    lib, c = factor
    if lib == "torch":
        import torch

        return torch.cholesky_solve(torch.as_tensor(y, dtype=c.dtype, device=c.device), c).cpu().numpy()
    from scipy.linalg import cho_solve

    return cho_solve(c, y, check_finite=False)


def solve(k_tt: np.ndarray, k_st: np.ndarray, y: np.ndarray, ridge: float, device: str = "cpu") -> np.ndarray:
    """Kernel regression K_st (K_tt + eps I)^-1 Y with eps = ridge * trace(K_tt) / n (Cholesky, float64)."""
    return k_st @ _weights(_factor(k_tt, ridge, device), y)


def _matrix(kern, name: str, key: str, kind: str, m: int) -> np.ndarray:
    """The first m training columns (and rows, for train-train) of one stored matrix."""
    if hasattr(kern, "matrix"):
        return kern.matrix(name, key, kind, m)
    k = kern[f"{name}/{key}/{kind}"]
    return k[:m, :m] if name == "train_train" else k[:, :m]


def regress(
    kern,
    arch_id: str,
    kind: str,
    y_train: np.ndarray,
    y_val: np.ndarray,
    y_test: np.ndarray,
    ridges: list[float],
    m: int | None = None,
    device: str = "cpu",
) -> dict[str, float | np.ndarray]:
    """NTK/NNGP regression at t = infinity, ridge chosen on validation accuracy.

    ``kern`` maps ``{split}_train/{arch}/{kind}`` to matrices (a dict, or a sharded
    synsym.ntk.kernels.Kernels read on demand). ``m`` uses the first m training images: the
    sub-matrix of the one kernel serves every learning-curve size. K_tt is factored once per
    ridge; the weights of the best ridge give the test and train predictions.
    """
    key = kernel_key(arch_id)
    m = len(y_train) if m is None else m
    k_tt = _matrix(kern, "train_train", key, kind, m)
    k_vt = _matrix(kern, "val_train", key, kind, m)
    y = one_hot(y_train[:m])
    best, errors = None, []
    for r in ridges:
        try:
            alpha = _weights(_factor(k_tt, r, device), y)
        except np.linalg.LinAlgError as e:
            errors.append(str(e))
            continue
        f_val = k_vt @ alpha
        score = (accuracy(f_val, y_val), -mse(f_val, one_hot(y_val)))
        if best is None or score > best[0]:
            best = (score, r, alpha)
    if best is None:
        raise np.linalg.LinAlgError(f"{arch_id}/{kind}: no ridge in {ridges} gives a positive-definite solve: {errors[-1]}")
    (val_acc, _), r, alpha = best
    del k_vt
    f_test = _matrix(kern, "test_train", key, kind, m) @ alpha
    return {
        "ridge": r,
        "val_acc": val_acc,
        "train_acc": accuracy(k_tt @ alpha, y_train[:m]),
        "test_acc": accuracy(f_test, y_test),
        "test_mse": mse(f_test, one_hot(y_test)),
        "test_pred": f_test,
    }
