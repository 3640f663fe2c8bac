"""Infinite-width NNGP / NTK kernels of the six architectures (neural-tangents).

The expensive object is the kernel of the 8-layer conv stack with the full
pixel-pair covariance (``diagonal_spatial=False``): O(m^2 d^2 L). All five
conv-family architectures share it, so a kernel job computes the stack once
per block of image pairs and applies every readout (Flatten = VEC = LCN,
GlobalAvgPool = GAP, AvgPool k = LAP4 / LAP8) to that one tensor before it
leaves the jitted function. Train-train blocks are computed for the upper
triangle only.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from synsym.architectures import ARCHITECTURES, FILTER, SIGMA_B2, SIGMA_W2, ArchSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

KINDS = ("nngp", "ntk")
# Architectures whose kernel a family job writes (LCN reads VEC's: LCN_inf == VEC_inf).
FAMILY_MEMBERS = {"fcn": ("fcn",), "conv": ("vec", "gap", "lap4", "lap8")}
# Bytes of live float64 intermediates per pixel-pair entry of a block (measured
# loosely: nngp, ntk, their shifted sums and the arc-cosine temporaries).
BYTES_PER_ENTRY = 8 * 14


def kernel_key(arch_id: str) -> str:
    """Which stored kernel serves an architecture (lcn -> vec)."""
    return "vec" if arch_id == "lcn" else arch_id


def _llvm_first() -> None:
    """Import Triton (if installed) before TensorFlow, which neural-tangents loads.

    Both carry an LLVM that registers the same command-line options. Loaded in the
    order TensorFlow, then Triton (torch imports Triton the first time torch.func or
    torch.compile runs), the process aborts; in the order Triton, then TensorFlow,
    both work."""
    import importlib.util

    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def _jax():
    _llvm_first()
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _stax():
    _jax()
    from neural_tangents import stax

    return stax


def _hidden(spec: ArchSpec, depth: int) -> list:
    stax = _stax()
    w, b = math.sqrt(SIGMA_W2), math.sqrt(SIGMA_B2)
    layers = []
    for _ in range(depth):
        if spec.body == "dense":
            layers.append(stax.Dense(1, W_std=w, b_std=b))
        elif spec.body == "conv":
            layers.append(stax.Conv(1, (FILTER, FILTER), padding="CIRCULAR", W_std=w, b_std=b))
        else:
            layers.append(stax.ConvLocal(1, (FILTER, FILTER), padding="CIRCULAR", W_std=w, b_std=b))
        layers.append(stax.Relu())
    return layers


def _readout(spec: ArchSpec) -> list:
    stax = _stax()
    w, b = math.sqrt(SIGMA_W2), math.sqrt(SIGMA_B2)
    if spec.body == "dense" or spec.readout == "flatten":
        pool = [stax.Flatten()]
    elif spec.readout == "gap":
        pool = [stax.GlobalAvgPool()]
    else:
        pool = [stax.AvgPool((spec.pool, spec.pool), (spec.pool, spec.pool)), stax.Flatten()]
    return pool + [stax.Dense(1, W_std=w, b_std=b)]


def stax_kernel_fn(spec: ArchSpec, depth: int) -> Callable:
    """The full neural-tangents kernel_fn of one architecture (the reference)."""
    stax = _stax()
    body = [stax.Flatten()] if spec.body == "dense" else []
    return stax.serial(*body, *_hidden(spec, depth), *_readout(spec))[2]


def _conv_readouts(nngp6, ntk6, image_size: int) -> dict:
    """Apply every conv-family readout to the stack's (N1, N2, H, H, W, W) kernels.

    A readout Dense layer in NTK parameterization maps (nngp, ntk) to
    (s_w^2 P[nngp] + s_b^2, s_w^2 P[nngp] + s_b^2 + s_w^2 P[ntk]) where P is
    the pooling's average over pixel pairs: the spatial diagonal for
    Flatten, all pairs for GAP, same-window pairs averaged over windows for LAP.
    """
    import jax.numpy as jnp

    def pool(k6, arch: str):
        spec = ARCHITECTURES[arch]
        if spec.readout == "flatten":
            return jnp.einsum("abhhww->ab", k6) / image_size**2
        if spec.readout == "gap":
            return k6.mean(axis=(2, 3, 4, 5))
        p, q = spec.pool, image_size // spec.pool
        n1, n2 = k6.shape[:2]
        k10 = k6.reshape(n1, n2, q, p, q, p, q, p, q, p).mean(axis=(3, 5, 7, 9))
        return jnp.einsum("abhhww->ab", k10) / q**2

    out = {}
    for arch in FAMILY_MEMBERS["conv"]:
        nngp = SIGMA_W2 * pool(nngp6, arch) + SIGMA_B2
        out[arch] = (nngp, nngp + SIGMA_W2 * pool(ntk6, arch))
    return out


def family_block_fn(family: str, depth: int, image_size: int) -> Callable:
    """A jitted (x1, x2) -> {arch: (nngp, ntk)} for one block of image pairs.

    ``x2=None`` means x2 is x1 (diagonal blocks): neural-tangents then uses
    one set of variances for both sides, so K(x, x) has correlation exactly 1.
    Passing an equal copy instead puts the ReLU's arccos at 1 - 1e-16, where
    its derivative is infinite, and the diagonal moves by ~1e-8 relative.
    """
    jax = _jax()
    if family == "fcn":
        kfn = stax_kernel_fn(ARCHITECTURES["fcn"], depth)

        def block(x1, x2):
            k = kfn(x1, x2, ("nngp", "ntk"))
            return {"fcn": (k.nngp, k.ntk)}
    elif family == "conv":
        stax = _stax()
        kfn = stax.serial(*_hidden(ARCHITECTURES["vec"], depth))[2]

        def block(x1, x2):
            k = kfn(x1, x2, diagonal_spatial=False)
            return _conv_readouts(k.nngp, k.ntk, image_size)
    else:
        raise ValueError(f"unknown kernel family {family!r}; allowed: fcn, conv")
    jitted = jax.jit(block)
    jitted_sym = jax.jit(lambda x1: block(x1, None))
    return lambda x1, x2=None: jitted_sym(x1) if x2 is None else jitted(x1, x2)


def block_size_for(family: str, image_size: int, max_memory_gb: float, block_size: int) -> int:
    """Largest block side <= block_size whose intermediates fit the memory budget."""
    pixels2 = (image_size**2) ** 2 if family == "conv" else 1
    per_pair = BYTES_PER_ENTRY * pixels2
    fit = int(math.sqrt(max_memory_gb * 2**30 / per_pair))
    if fit < 1:
        raise MemoryError(
            f"one pair of {image_size}x{image_size} images needs {per_pair / 2**30:.2f} GB for the "
            f"{family} kernel; kernels.max_memory_gb={max_memory_gb} is too small"
        )
    return max(1, min(block_size, fit))


def _blocks(n: int, b: int) -> list[tuple[int, int]]:
    return [(i, min(i + b, n)) for i in range(0, n, b)]


def _pad(x: np.ndarray, b: int) -> np.ndarray:
    """Pad a block to b rows by repeating its first image (one compiled shape)."""
    if len(x) == b:
        return x
    return np.concatenate([x, np.repeat(x[:1], b - len(x), axis=0)])


def compute_family(
    family: str,
    x_train: np.ndarray,
    others: dict[str, np.ndarray],
    depth: int,
    block_size: int = 32,
    max_memory_gb: float = 2.0,
    log: Callable[[str], None] | None = None,
    engine: str = "fast",
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """All kernels of a family: ``{split}/{arch}/{kind}`` -> float64 matrix.

    ``others`` maps a split name (``val``, ``test``) to its images; the
    result holds ``train_train`` and ``{split}_train`` for each. ``engine``
    is ``fast`` (:mod:`synsym.engine`, torch) or ``neural_tangents`` (the
    reference, nt's stax kernels with the shared stack).
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    image_size = x_train.shape[1]
    b = block_size_for(family, image_size, max_memory_gb, block_size)
    if engine == "fast":
        from synsym.engine import backend, block_fn

        fn = block_fn(family, depth, image_size, device)
        if family == "conv":
            log(f"[kernel {family}] engine fast: {backend(device)}")
    elif engine == "neural_tangents":
        fn = family_block_fn(family, depth, image_size)
    else:
        raise ValueError(f"unknown kernel engine {engine!r}; allowed: fast, neural_tangents")
    members = FAMILY_MEMBERS[family]
    out: dict[str, np.ndarray] = {}
    tasks = []  # (name, xa, rows, cols, symmetric)
    tasks.append(("train_train", x_train, x_train, True))
    for split, x in others.items():
        tasks.append((f"{split}_train", x, x_train, False))
    total = sum(
        len(_blocks(len(xa), b)) * (len(_blocks(len(xb), b)) + 1) // 2 if sym else len(_blocks(len(xa), b)) * len(_blocks(len(xb), b))
        for _, xa, xb, sym in tasks
    )
    done, t0 = 0, time.time()
    for name, xa, xb, sym in tasks:
        for arch in members:
            for kind in KINDS:
                out[f"{name}/{arch}/{kind}"] = np.empty((len(xa), len(xb)))
        for i0, i1 in _blocks(len(xa), b):
            for j0, j1 in _blocks(len(xb), b):
                if sym and j0 < i0:
                    continue
                diag = sym and i0 == j0
                res = fn(_pad(xa[i0:i1], b), None if diag else _pad(xb[j0:j1], b))
                for arch in members:
                    for kind, val in zip(KINDS, res[arch]):
                        blk = np.asarray(val)[: i1 - i0, : j1 - j0]
                        m = out[f"{name}/{arch}/{kind}"]
                        m[i0:i1, j0:j1] = blk
                        if sym:
                            m[j0:j1, i0:i1] = blk.T
                done += 1
                if done % max(1, total // 20) == 0 or done == total:
                    el = time.time() - t0
                    log(f"[kernel {family}] block {done}/{total} elapsed {el:.0f}s eta {el / done * (total - done):.0f}s")
    return out


# ---------------------------------------------------------------- regression


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
    from synsym.data import one_hot
    from synsym.metrics import accuracy, mse

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


def save_kernels(kern: dict[str, np.ndarray], path: str, meta: dict) -> None:
    from synsym.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k.replace("/", "__"): v for k, v in kern.items()}, **{f"meta__{k}": np.asarray(v) for k, v in meta.items()})


def load_kernels(path: str, arch: str | None = None) -> dict[str, np.ndarray]:
    """A kernel file's matrices; with ``arch``, only that architecture's (a regression needs one
    of the family's readouts: at paper scale the conv file holds 4 x 2 x 45k x 60k doubles, 173 GB)."""
    with np.load(path) as z:
        keep = [k for k in z.files if arch is None or f"__{kernel_key(arch)}__" in k or k.startswith("meta__")]
        return {k.replace("__", "/"): z[k] for k in keep}
