"""Infinite-width kernels: the shared conv-stack readouts equal neural-tangents'
full architectures, LCN_inf == VEC_inf, and Theorem 4.1 holds exactly."""

import numpy as np
import pytest
from helpers import kernel_args

from synsym.core import architectures as A
from synsym.core import transforms as T
from synsym.ntk import kernels as K
from synsym.ntk import reference as REF
from synsym.ntk import regression as REG

S = 8
DEPTH = 3


def images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, S, S, 3))


@pytest.fixture(scope="module")
def xs():
    return images(7), images(3, 1)


def family_kernels(fam, x, x2, depth=DEPTH, block=3):
    return K.compute_family(fam, x, {"test": x2}, depth, block_size=block, max_memory_gb=1.0, **kernel_args())


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


# neural-tangents' ReLU takes arccos of K(x,x') / sqrt(K(x,x) K(x',x')); on the
# diagonal that ratio is 1 up to rounding, where arccos has infinite slope, so
# nt's own diagonal moves by ~1e-8 relative with the summation order (nt on a
# subset of the same images differs from nt on all of them by 1e-7). That noise
# in K(x, x) reaches the next layer's off-diagonal entries through the
# normalization, so transformed inputs move them by up to ~1e-8 (measured 4e-9
# to 1.003e-8 between runs: XLA's summation order varies). Invariant pairs are
# held to 1e-7 (diagonal 1e-6); broken invariances differ by > 1e-3, four orders
# of magnitude apart. The fast engine has an exact diagonal, and there the same
# theorem holds to 1e-12 (tests/test_engine.py).
OFF_DIAG_TOL, DIAG_TOL = 1e-7, 1e-6
SAME_INPUT_TOL = 1e-10  # off-diagonal, same images through two code paths: well conditioned


def split_rel(a, b, square):
    """(off-diagonal, diagonal) relative differences; diagonal is 0 for rectangular blocks."""
    if not square:
        return rel(a, b), 0.0
    off = ~np.eye(len(a), dtype=bool)
    scale = np.abs(b).max()
    return np.abs(a - b)[off].max() / scale, np.abs(np.diag(a) - np.diag(b)).max() / scale


@pytest.mark.parametrize("arch", ["fcn", "vec", "gap", "lap4", "lap8"])
def test_shared_stack_readouts_equal_neural_tangents(arch, xs):
    """One conv-stack pass + readouts == nt's own per-architecture kernel_fn (blocked, triangle-filled)."""
    x, x2 = xs
    kern = family_kernels(A.get(arch).kernel_family, x, x2)
    ref = REF.stax_kernel_fn(A.get(arch, "circular"), DEPTH)
    for split, other in (("train_train", None), ("test_train", x2)):
        want = ref(x, None, ("nngp", "ntk")) if other is None else ref(other, x, ("nngp", "ntk"))
        for kind in K.KINDS:
            off, diag = split_rel(kern[f"{split}/{arch}/{kind}"], np.asarray(getattr(want, kind)), other is None)
            assert off < SAME_INPUT_TOL and diag < DIAG_TOL, (split, kind, off, diag)


def test_lcn_inf_equals_vec_inf(xs):
    x, _ = xs
    lcn = REF.stax_kernel_fn(A.get("lcn", "circular"), DEPTH)(x, None, ("nngp", "ntk"))
    vec = REF.stax_kernel_fn(A.get("vec", "circular"), DEPTH)(x, None, ("nngp", "ntk"))
    gap = REF.stax_kernel_fn(A.get("gap", "circular"), DEPTH)(x, None, "ntk")
    for kind in ("ntk", "nngp"):
        off, diag = split_rel(np.asarray(getattr(lcn, kind)), np.asarray(getattr(vec, kind)), True)
        assert off < SAME_INPUT_TOL and diag < DIAG_TOL, (kind, off, diag)
    assert rel(np.asarray(gap), np.asarray(vec.ntk)) > 1e-2  # a different kernel is visibly different


@pytest.fixture(scope="module")
def invariance_table():
    """max |K(tau X) - K(X)| / max |K| for every architecture (ntk and nngp) and transform."""
    x = images(6, 2)
    base = {f: family_kernels(f, x, x[:2]) for f in A.KERNEL_FAMILIES}
    out = {}
    for tid in T.TRANSFORMS:
        tx = T.make(tid, S, 0, 0).apply(x)
        for fam in A.KERNEL_FAMILIES:
            kt = family_kernels(fam, tx, tx[:2])
            for key, val in kt.items():
                out[(tid, key)] = split_rel(val, base[fam][key], key.startswith("train_train"))
    return out


@pytest.mark.parametrize("arch", list(A.ARCHITECTURES))
@pytest.mark.parametrize("tid", list(T.TRANSFORMS))
def test_theorem_4_1_kernels(invariance_table, arch, tid):
    key = K.kernel_key(arch)
    for split in ("train_train", "test_train"):
        for kind in K.KINDS:
            off, diag = invariance_table[(tid, f"{split}/{key}/{kind}")]
            if A.predicts_invariance(arch, tid, infinite=True):
                assert off < OFF_DIAG_TOL and diag < DIAG_TOL, (arch, tid, split, kind, off, diag)
            else:
                assert off > 1e-3, (arch, tid, split, kind, off)


def test_regression_predictions_agree_for_invariant_pairs(mini_batches):
    """On real mini-CIFAR images: equal kernels give equal NTK predictions and accuracies."""
    from synsym.core.data import make_split

    s = make_split(mini_batches, 40, 10, 20, 0, 8, 0, False)
    preds = {}
    for tid in ("identity", "o3_shared", "o3_per_pixel"):
        tau = T.make(tid, 8, 0, 0)
        kern = K.compute_family("conv", tau.apply(s.x_train), {"val": tau.apply(s.x_val), "test": tau.apply(s.x_test)},
                                DEPTH, 20, 1.0, **kernel_args())
        for arch in ("vec", "gap"):
            preds[(tid, arch)] = REG.regress(kern, arch, "ntk", s.y_train, s.y_val, s.y_test, [1e-3, 1e-2], device="cpu")
    for arch in ("vec", "gap"):
        a, b = preds[("identity", arch)], preds[("o3_shared", arch)]
        assert np.abs(a["test_pred"] - b["test_pred"]).max() < 1e-8
        assert a["test_acc"] == b["test_acc"]
    np.testing.assert_allclose(preds[("o3_per_pixel", "vec")]["test_pred"], preds[("identity", "vec")]["test_pred"],
                               atol=1e-8)
    assert np.abs(preds[("o3_per_pixel", "gap")]["test_pred"] - preds[("identity", "gap")]["test_pred"]).max() > 1e-4


def test_solve_matches_explicit_inverse():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    k = a @ a.T + np.eye(6)
    ks = rng.standard_normal((3, 6))
    y = rng.standard_normal((6, 2))
    eps = 0.1 * np.trace(k) / 6
    np.testing.assert_allclose(REG.solve(k, ks, y, 0.1, "cpu"), ks @ np.linalg.inv(k + eps * np.eye(6)) @ y, rtol=1e-10)


def test_non_positive_definite_is_a_clear_error():
    k = -np.eye(4)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        REG.solve(k, np.ones((1, 4)), np.ones((4, 1)), 1e-6, "cpu")


def test_memory_budget_too_small_is_clear():
    with pytest.raises(MemoryError, match="max_memory_gb"):
        K.block_size_for("conv", 32, 1e-4, 32)
    assert K.block_size_for("conv", 8, 1.0, 1000) < 1000  # budget, not the request, bounds the block


@pytest.mark.parametrize("arch,widths,padding", [("fcn", (64, 1024), "circular"), ("vec", (16, 256), "circular"),
                                                 ("vec", (16, 256), "zero"), ("lcn", (4, 64), "zero")])
def test_empirical_ntk_of_torch_net_converges_to_stax(arch, widths, padding):
    """The torch models and the stax kernels share the parameterization (and the padding: circular
    = nt's CIRCULAR, zero = nt's SAME): the finite-width empirical NTK approaches the analytic one
    as width grows."""
    import torch

    from synsym.finite import models

    spec = A.get(arch, padding)
    depth = 2
    x = images(3, 5)
    want = np.asarray(REF.stax_kernel_fn(spec, depth)(x, None, "ntk"))  # the spec carries the padding
    errs = []
    for w in widths:
        p = models.init_params(spec, w, depth, S, [0, 1], 0, torch.float64, "cpu")
        for v in p.values():
            v.requires_grad_(True)
        xt = torch.as_tensor(x)[None].expand(2, *x.shape)
        ntk = np.zeros((3, 3))
        for k in range(2):  # average over two logits and two inits
            grads = []
            for i in range(3):
                out = models.apply(spec, p, xt[:, i : i + 1], depth)[:, 0, k].sum()
                g = torch.autograd.grad(out, list(p.values()))
                grads.append(torch.cat([gi.flatten(1) for gi in g], 1))
            j = torch.stack(grads, 1)  # (seeds, n, P)
            ntk += (j @ j.transpose(1, 2)).mean(0).numpy() / 2
        errs.append(rel(ntk, want))
    assert errs[1] < errs[0] and errs[1] < 0.1, errs
