"""Kernel regression at t = infinity (Eq. 6): the NNGP/NTK posterior mean on the test set,
with a ridge picked on validation accuracy.

Eq. 6 has no regularizer. Besides the configured grid (x trace/n), every regression also tries
the ridgeless limit: the smallest of RIDGELESS at which the float64 Cholesky succeeds (0 when
K_tt itself factors), so validation can pick Eq. 6 as written whenever it is solvable.
"""

from __future__ import annotations

import numpy as np

from synsym.core.data import one_hot
from synsym.core.metrics import accuracy, mse
from synsym.ntk.kernels import kernel_key


def _factor(k_tt: np.ndarray, ridge: float, device: str, lib: str | None = None):
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


def solve(k_tt: np.ndarray, k_st: np.ndarray, y: np.ndarray, ridge: float, device: str) -> np.ndarray:
    """Kernel regression K_st (K_tt + eps I)^-1 Y with eps = ridge * trace(K_tt) / n (Cholesky, float64)."""
    return k_st @ _weights(_factor(k_tt, ridge, device), y)


# Ridges (x trace/n) tried in order for the ridgeless limit: the first that factors is the candidate.
RIDGELESS = (0.0, 1e-12, 1e-10, 1e-8, 1e-6)


def _ridgeless_factor(k_tt: np.ndarray, device: str) -> tuple[float, object] | None:
    """(the smallest RIDGELESS ridge whose Cholesky succeeds, its factor), or None if none does."""
    for r in RIDGELESS:
        try:
            return r, _factor(k_tt, r, device)
        except np.linalg.LinAlgError:
            continue
    return None


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
    *,
    device: str,
    ridgeless: bool = True,
    fixed_ridge: float | None = None,
) -> dict[str, float | bool | np.ndarray]:
    """NTK/NNGP regression at t = infinity, ridge chosen on validation accuracy (then MSE).

    ``kern`` maps ``{split}_train/{arch}/{kind}`` to matrices (a dict, or a sharded
    synsym.ntk.kernels.Kernels read on demand). ``m`` uses the first m training images: the
    sub-matrix of the one kernel serves every learning-curve size. The candidates are
    ``ridges`` plus, with ``ridgeless``, the ridgeless limit (RIDGELESS); ``fixed_ridge`` skips
    the choice and uses that ridge (a learning curve holds the one picked at its largest size).
    K_tt is factored once per candidate; the best one's weights give the test and train
    predictions. ``ridgeless`` in the result says whether the ridgeless candidate won.
    """
    key = kernel_key(arch_id)
    m = len(y_train) if m is None else m
    k_tt = _matrix(kern, "train_train", key, kind, m)
    k_vt = _matrix(kern, "val_train", key, kind, m)
    y = one_hot(y_train[:m])
    best, errors = None, []

    def consider(r: float, factor, is_ridgeless: bool) -> None:
        nonlocal best
        alpha = _weights(factor, y)
        f_val = k_vt @ alpha
        score = (accuracy(f_val, y_val), -mse(f_val, one_hot(y_val)))
        if best is None or score > best[0]:
            best = (score, r, alpha, is_ridgeless)

    if fixed_ridge is not None:
        # a principal sub-matrix of a factorable K_tt factors too, up to rounding: if it does not,
        # the next larger candidate is used
        for r in sorted({fixed_ridge, *(x for x in (*RIDGELESS, *ridges) if x > fixed_ridge)}):
            try:
                consider(r, _factor(k_tt, r, device), r in RIDGELESS)
                break
            except np.linalg.LinAlgError as e:
                errors.append(str(e))
    else:
        found = _ridgeless_factor(k_tt, device) if ridgeless else None
        if found is not None and found[0] not in ridges:
            consider(found[0], found[1], True)
        for r in ridges:
            try:
                consider(r, _factor(k_tt, r, device), False)
            except np.linalg.LinAlgError as e:
                errors.append(str(e))
    if best is None:
        raise np.linalg.LinAlgError(f"{arch_id}/{kind}: no ridge in {ridges} gives a positive-definite solve: {errors[-1]}")
    (val_acc, _), r, alpha, is_ridgeless = best
    k_vt = None  # free the validation stripe before reading the test one
    f_test = _matrix(kern, "test_train", key, kind, m) @ alpha
    return {
        "ridge": r,
        "ridgeless": is_ridgeless,
        "val_acc": val_acc,
        "train_acc": accuracy(k_tt @ alpha, y_train[:m]),
        "test_acc": accuracy(f_test, y_test),
        "test_mse": mse(f_test, one_hot(y_test)),
        "test_pred": f_test,
    }
