"""The GPU speed switches (training.tf32 / conv / channels_last / compile) train the same function:
each path equals today's in float64 to 1e-10 on small nets, here on the CPU."""

import numpy as np
import pytest
import torch

from synsym.core import architectures as A
from synsym.finite import models as M
from synsym.finite import training as TR


def small(arch: str, seeds=(0, 1, 2)):
    spec = A.get(arch, "circular")
    params = M.init_params(spec, 5, 3, 8, list(seeds), 0, torch.float64, "cpu")
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((len(seeds), 6, 8, 8, 3)))
    return spec, params, x


def logits_and_grads(spec, params, x):
    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    out = M.apply(spec, p, x, 3)
    grads = torch.autograd.grad((out**2).sum(), list(p.values()))
    return out.detach(), grads


@pytest.mark.parametrize("arch", ["vec", "gap", "lap4"])
@pytest.mark.parametrize("choice", [{"conv": "per_seed"}, {"channels_last": True},
                                    {"conv": "per_seed", "channels_last": True}])
def test_conv_paths_equal_the_grouped_conv(arch, choice):
    spec, params, x = small(arch)
    ref, ref_g = logits_and_grads(spec, params, x)
    with M.speed(**choice) as s:
        assert s == M.Speed(**{**M.Speed().__dict__, **choice})
        out, g = logits_and_grads(spec, params, x)
    assert M._SPEED == M.Speed()  # restored
    assert torch.allclose(out, ref, rtol=0, atol=1e-10)
    for a, b in zip(g, ref_g):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


def test_unknown_conv_layout_is_one_line():
    with pytest.raises(ValueError, match="unknown conv layout 'winograd'; allowed: grouped, per_seed"):
        with M.speed(conv="winograd"):
            pass


def train(arch: str, **switches):
    spec, params, x = small(arch, seeds=(0, 1))
    y = torch.arange(6) % 10
    batches = np.stack([TR.batch_indices(0, s, 6, 3, 12) for s in (0, 1)])
    cfg = TR.TrainConfig(max_steps=12, eval_every=4, batch_size=3, eval_batch=6, **switches)
    res = TR.train(spec, params, {"x_train": x, "y_train": y}, 3, 0.05, 1e-7, batches, cfg, log=lambda s: None)
    return params, res


@pytest.mark.parametrize("switches", [{"conv": "per_seed", "channels_last": True}, {"tf32": True}, {"tf32": False}])
def test_training_with_a_switch_equals_todays_path(switches):
    ref, ref_res = train("gap")
    got, res = train("gap", **switches)
    for k in ref:
        assert torch.allclose(got[k], ref[k], rtol=0, atol=1e-10), k
    assert np.array_equal(res["steps"], ref_res["steps"])


@pytest.mark.slow
def test_compiled_training_step_equals_todays_path():
    ref, _ = train("vec")
    got, _ = train("vec", compile=True)
    for k in ref:
        assert torch.allclose(got[k], ref[k], rtol=0, atol=1e-10), k


def test_tf32_switch_sets_and_restores_torchs_float32_precision():
    mm, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (mm.fp32_precision, conv.fp32_precision)
    with TR.float32_precision(True):
        assert (mm.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
    with TR.float32_precision(False):
        assert (mm.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
    with TR.float32_precision(None):
        assert (mm.fp32_precision, conv.fp32_precision) == before
    assert (mm.fp32_precision, conv.fp32_precision) == before
