"""The neural-tangents reference (nt.stax): every architecture's exact kernel_fn, and a block
function with the same interface as synsym.ntk.engine's, that the fast engine is tested against.

The expensive object is the kernel of the 8-layer conv stack with the full pixel-pair
covariance (``diagonal_spatial=False``): O(m^2 d^2 L). All conv-family architectures share
it, so one block computes the stack once and applies every readout (Flatten = VEC = LCN,
GlobalAvgPool = GAP, AvgPool k = LAP4 / LAP8) before it leaves the jitted function.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from synsym.core.architectures import FAMILY_MEMBERS, FILTER, SIGMA_B2, SIGMA_W2, ArchSpec, check_padding, get

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _jax():
    import jax  # synsym's __init__ has loaded Triton's LLVM first (TensorFlow's comes with neural-tangents)

    jax.config.update("jax_enable_x64", True)
    return jax


def _stax():
    _jax()
    from neural_tangents import stax

    return stax


NT_PADDING = {"circular": "CIRCULAR", "zero": "SAME"}  # neural-tangents' names for our paddings


def _hidden(spec: ArchSpec, depth: int) -> list:
    """The hidden layers of one architecture, padded as its spec says (spec.padding: the run's model.padding)."""
    stax = _stax()
    pad = NT_PADDING[check_padding(spec.padding)]
    w, b = math.sqrt(SIGMA_W2), math.sqrt(SIGMA_B2)
    layers = []
    for _ in range(depth):
        if spec.body == "dense":
            layers.append(stax.Dense(1, W_std=w, b_std=b))
        elif spec.body == "conv":
            layers.append(stax.Conv(1, (FILTER, FILTER), padding=pad, W_std=w, b_std=b))
        else:
            layers.append(stax.ConvLocal(1, (FILTER, FILTER), padding=pad, W_std=w, b_std=b))
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
    """The full neural-tangents kernel_fn of one architecture (the reference), with the spec's padding."""
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
        spec = get(arch)  # its readout (the padding is the hidden layers')
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


def family_block_fn(family: str, depth: int, image_size: int, padding: str) -> Callable:
    """A jitted (x1, x2) -> {arch: (nngp, ntk)} for one block of image pairs.

    ``x2=None`` means x2 is x1 (diagonal blocks): neural-tangents then uses
    one set of variances for both sides, so K(x, x) has correlation exactly 1.
    Passing an equal copy instead puts the ReLU's arccos at 1 - 1e-16, where
    its derivative is infinite, and the diagonal moves by ~1e-8 relative.
    """
    jax = _jax()
    if family == "fcn":
        kfn = stax_kernel_fn(get("fcn", padding), depth)

        def block(x1, x2):
            k = kfn(x1, x2, ("nngp", "ntk"))
            return {"fcn": (k.nngp, k.ntk)}
    elif family == "conv":
        stax = _stax()
        kfn = stax.serial(*_hidden(get("vec", padding), depth))[2]

        def block(x1, x2):
            k = kfn(x1, x2, diagonal_spatial=False)
            return _conv_readouts(k.nngp, k.ntk, image_size)
    else:
        raise ValueError(f"unknown kernel family {family!r}; allowed: fcn, conv")
    jitted = jax.jit(block)
    jitted_sym = jax.jit(lambda x1: block(x1, None))
    return lambda x1, x2=None: jitted_sym(x1) if x2 is None else jitted(x1, x2)
