"""Finite networks: Theorem 4.1 by coupled training, Theorem 3.1 by construction,
learning-rate estimation, reproducibility."""

import itertools

import numpy as np
import pytest
import torch

from synsym.core import architectures as A
from synsym.core import transforms as T
from synsym.core.device import resolve_device
from synsym.finite import embeddings as E
from synsym.finite import models as M
from synsym.finite import training as TR

S = 8
DEPTH = 2


def data(n=48, n_test=12, seed=0, size=S):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, size, size, 3)), g.integers(0, 10, n), g.standard_normal((n_test, size, size, 3))


def stack(x):
    return torch.as_tensor(x, dtype=torch.float64)[None]


def run(arch, params, x, y, steps=20, lr=0.05, l2=1e-3, padding="circular"):
    cfg = TR.TrainConfig(max_steps=steps, eval_every=steps, batch_size=8)
    n_seeds = params["b_out"].shape[0]
    batches = np.stack([TR.batch_indices(0, s, len(y), 8, steps) for s in range(n_seeds)])
    d = {"x_train": stack(x).expand(n_seeds, *x.shape), "y_train": torch.as_tensor(y)}
    TR.train(A.get(arch, padding), params, d, DEPTH, torch.tensor([lr], dtype=torch.float64), l2, batches, cfg, log=lambda s: None)
    return params


def coupled_gap(arch, tid, width=6, force_shared=False, padding="circular"):
    """max |f_{theta_t}(tau X*) - f_{theta^tau_t}(X*)| after 20 SGD+momentum+L2 steps in float64."""
    spec = A.get(arch, padding)
    x, y, xt = data()
    tau = T.make(tid, S, 0, 0)
    p0 = M.init_params(spec, width, DEPTH, S, [0], 0, torch.float64, "cpu")
    on_tau = run(arch, {k: v.clone() for k, v in p0.items()}, tau.apply(x), y, padding=padding)
    coupling = tau
    if force_shared:  # the nearest thing a shared filter can absorb: pixel 0's rotation everywhere
        coupling = T.Transform("o3_shared", pixel=np.broadcast_to(tau.pixel[0, 0], tau.pixel.shape).copy())
    p_tau = M.couple_first_layer(spec, {k: v.clone() for k, v in p0.items()}, coupling, S)
    on_x = run(arch, p_tau, x, y, padding=padding)
    a = M.apply(spec, on_tau, stack(tau.apply(xt)), DEPTH)
    b = M.apply(spec, on_x, stack(xt), DEPTH)
    return (a - b).abs().max().item(), a.abs().max().item()


@pytest.mark.parametrize(
    "arch,tid,padding",
    [("fcn", "o_3d", "circular"), ("fcn", "perm_3d", "circular"), ("lcn", "o3_per_pixel", "circular"),
     ("vec", "o3_shared", "circular"), ("gap", "o3_shared", "circular"), ("lap4", "o3_shared", "circular"),
     ("lcn", "o3_per_pixel", "zero"), ("gap", "o3_shared", "zero")],
)
def test_theorem_4_1_coupled_training_agrees(arch, tid, padding):
    """Theorem 4.1 for finite nets under both paddings: zero padding only adds taps that read 0,
    whose weights get no gradient in either net, so the coupling stays exact."""
    assert A.predicts_invariance(arch, tid, infinite=False)
    gap, scale = coupled_gap(arch, tid, padding=padding)
    assert scale > 0.1 and gap < 1e-9, gap


def test_theorem_4_1_fails_outside_the_group():
    gap_vec, _ = coupled_gap("vec", "o3_per_pixel", force_shared=True)
    assert not A.predicts_invariance("vec", "o3_per_pixel", infinite=False)
    assert gap_vec > 1e-2
    with pytest.raises(M.NotRepresentable):
        gap = A.get("gap", "circular")
        M.couple_first_layer(gap, M.init_params(gap, 4, 1, S, [0], 0, torch.float32, "cpu"), T.make("perm_3d", S, 0, 0), S)
    # gap trained on permuted data vs plain data from the same init: far apart
    spec = A.get("gap", "circular")
    x, y, xt = data()
    tau = T.make("perm_3d", S, 0, 0)
    p0 = M.init_params(spec, 6, DEPTH, S, [0], 0, torch.float64, "cpu")
    a = run("gap", {k: v.clone() for k, v in p0.items()}, tau.apply(x), y)
    b = run("gap", {k: v.clone() for k, v in p0.items()}, x, y)
    diff = (M.apply(spec, a, stack(tau.apply(xt)), DEPTH) - M.apply(spec, b, stack(xt), DEPTH)).abs().max()
    assert diff > 1e-2


def outputs(arch, p, x, size):
    return M.apply(A.get(arch, "circular"), p, torch.as_tensor(x)[None].expand(p["b_out"].shape[0], *x.shape), DEPTH + 1)


@pytest.mark.parametrize("small,big,embed", [("gap", "vec", "gap_in_vec"), ("vec", "lcn", "vec_in_lcn"),
                                              ("lcn", "vec", "lcn_in_vec"), ("lcn", "fcn", "lcn_in_fcn")])
def test_theorem_3_1_embeddings(small, big, embed):
    size, n, depth = 4, 2, DEPTH + 1
    x = np.random.default_rng(3).standard_normal((5, size, size, 3))
    p = M.init_params(A.get(small, "circular"), n, depth, size, [0, 1], 0, torch.float64, "cpu")
    fn = getattr(E, embed)
    q = fn(p, size) if embed == "gap_in_vec" else fn(p, size, depth)
    a, b = outputs(small, p, x, size), outputs(big, q, x, size)
    assert a.abs().max() > 0.1
    assert (a - b).abs().max() < 1e-10
    # the big net really is bigger: a random perturbation of the embedding changes the function
    q2 = {k: v + 0.1 * torch.randn_like(v) for k, v in q.items()}
    assert (outputs(big, q2, x, size) - a).abs().max() > 1e-3


def test_width_of_lcn_in_vec_is_dn():
    p = M.init_params(A.get("lcn", "circular"), 2, 2, 4, [0], 0, torch.float64, "cpu")
    assert E.lcn_in_vec(p, 4, 2)["w2"].shape[1:3] == (32, 32)


def test_lambda_max_power_iteration_matches_explicit_ntk():
    spec = A.get("vec", "circular")
    p = M.init_params(spec, 6, DEPTH, S, [0, 1], 0, torch.float64, "cpu")
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((2, 6, S, S, 3)))
    lam = TR.estimate_lambda_max(spec, p, x, DEPTH, iters=100)
    for s in range(2):
        ps = {k: v[s : s + 1] for k, v in p.items()}
        def f(*vals, ps=ps, s=s):
            return M.apply(spec, dict(zip(ps, vals)), x[s : s + 1], DEPTH).reshape(-1)

        jac = torch.autograd.functional.jacobian(f, tuple(ps.values()))
        j = torch.cat([t.reshape(t.shape[0], -1) for t in jac], 1)
        assert abs(lam[s].item() / torch.linalg.eigvalsh(j @ j.T)[-1].item() - 1) < 1e-6
    # paired NN / NN+: exactly 8x the learning rate from the same lambda_max
    eta = TR.eta0_from_lambda(lam, 6, 0.9)
    assert torch.allclose(eta, 2 * 1.9 * 6 / lam)


@pytest.mark.parametrize("padding", A.PADDINGS)
def test_local_layer_matches_explicit_loop(padding):
    spec = A.get("lcn", "circular")
    p = M.init_params(spec, 3, 1, 4, [0, 1], 0, torch.float64, "cpu")
    x = torch.as_tensor(np.random.default_rng(1).standard_normal((2, 2, 3, 4, 4)))  # (S, B, C, H, W)
    z = x.reshape(2, 2, 3, 16).permute(0, 3, 2, 1)  # the layer's (S, P, C, B) layout
    rows = M._patch_rows(2, 4, z.device, padding)
    got = M._local(z, p["w1"], p["b1"], rows, padding).permute(0, 3, 2, 1).reshape(2, 2, -1, 4, 4)

    def pixel(s, c, h, w):  # what a tap reads: wrapped, or zero outside the image
        if padding == "circular" or (0 <= h < 4 and 0 <= w < 4):
            return x[s, :, c, h % 4, w % 4]
        return torch.zeros(2, dtype=x.dtype)

    want = torch.zeros_like(got)
    for s, h, w in itertools.product(range(2), range(4), range(4)):
        patch = torch.stack([pixel(s, c, h + dh, w + dw) for c in range(3)
                             for dh in (-1, 0, 1) for dw in (-1, 0, 1)], -1)  # (B, 27)
        want[s, :, :, h, w] = M.SW / np.sqrt(27) * patch @ p["w1"][s, h * 4 + w] + M.SB * p["b1"][s, h * 4 + w]
    assert (got - want).abs().max() < 1e-12


def test_zero_padded_conv_is_torchs():
    """The finite conv layer under zero padding is torch's own conv2d(padding=1)."""
    w = torch.randn(2, 5, 3, 3, 3, dtype=torch.float64)  # (S, n, C, 3, 3)
    b = torch.randn(2, 5, dtype=torch.float64)
    z = torch.randn(4, 2 * 3, 6, 6, dtype=torch.float64)
    got = M._conv(z, w, b, "zero")
    want = torch.cat([torch.nn.functional.conv2d(z[:, 3 * i : 3 * i + 3], w[i], padding=1) for i in range(2)], 1)
    want = M.SW / np.sqrt(27) * want + M.SB * b.reshape(1, 10, 1, 1)
    assert (got - want).abs().max() < 1e-12
    assert (M._conv(z, w, b, "circular") - want).abs().max() > 1e-3  # the edges differ


def test_init_is_keyed_by_seed_not_order_or_inference():
    spec = A.get("vec", "circular")
    a = M.init_params(spec, 4, 2, S, [0, 1], 0, torch.float32, "cpu")
    b = M.init_params(spec, 4, 2, S, [1], 0, torch.float32, "cpu")
    assert torch.equal(a["w1"][1], b["w1"][0])
    assert not torch.equal(a["w1"][0], a["w1"][1])


def test_uniform_first_layer_is_variance_matched():
    p = M.init_params(A.get("fcn"), 512, 1, S, [0], 0, torch.float32, "cpu", first_layer="uniform")
    w = p["w1"]
    assert w.abs().max() <= np.sqrt(3) and abs(w.var().item() - 1) < 0.02
    assert abs(p["w_out"].var().item() - 1) < 0.1


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="device: cuda"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="allowed: cpu, cuda, auto"):
        resolve_device("tpu")


def test_training_is_bit_reproducible():
    spec = A.get("gap", "circular")
    x, y, xt = data()
    outs = []
    for _ in range(2):
        p = M.init_params(spec, 4, DEPTH, S, [0, 1], 0, torch.float64, "cpu")
        run("gap", p, x, y, steps=10)
        outs.append(M.apply(spec, p, stack(xt).expand(2, *xt.shape), DEPTH))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("h,w", [(8, 8), (3, 5), (2, 2), (1, 4)])
def test_circular_pad_matches_torch_and_its_derivatives(h, w):
    """The hand-written wrap-around pad: same values as F.pad(circular), exact backward and forward-mode."""
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    assert torch.equal(M.circular_pad(x), torch.nn.functional.pad(x, (1, 1, 1, 1), mode="circular"))
    assert torch.autograd.gradcheck(M.circular_pad, (x,), check_forward_ad=True)
    g = torch.randn(2, 3, h + 2, w + 2, dtype=torch.float64)
    ref = torch.autograd.grad(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="circular"), x, g)[0]
    assert torch.allclose(torch.autograd.grad(M.circular_pad(x), x, g)[0], ref, rtol=0, atol=1e-14)
