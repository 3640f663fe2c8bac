"""Benchmark: training throughput of one cell, 5 seeds vectorized vs 5 sequential runs.

    python bench/training.py                       # vec at the default (24) and paper (128) widths, 8x8
    python bench/training.py --arch lcn --widths 16 32 --image-size 16 --device cuda

Same inputs, same number of SGD steps per seed. Prints seed-steps/s for both,
their ratio, the achieved FLOP/s against a measured float32 matmul peak of
the machine, and (CPU) the bound 1 / (share of a 1-seed run's time spent in
matmul and convolution kernels) that stacking seeds cannot beat unless the
stacked kernels themselves run faster per seed. FLOPs are counted by hand (torch's FlopCounterMode ignores conv
groups and overcounts the grouped convolution S-fold): forward = sum over
layers of 2 x positions x fan-in x fan-out, one step = 3 x forward x batch.
These are direct-convolution FLOPs: oneDNN may run 3x3 convolutions with
Winograd, which needs fewer, so wide nets can show more than 100% of peak.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import matmul_peak, sync  # noqa: E402  (bench/_common.py)

from synsym.core import architectures as A
from synsym.core.device import resolve_device
from synsym.finite import models as M
from synsym.finite import training as TR


def run(arch: str, width: int, seeds: list[int], s: int, steps: int, device: torch.device, padding: str) -> float:
    """Seconds for `steps` SGD steps of the stacked seeds."""
    spec = A.get(arch, padding)
    n = 400
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((n, s, s, 3)), dtype=torch.float32, device=device)
    y = torch.as_tensor(np.random.default_rng(1).integers(0, 10, n), device=device)
    p = M.init_params(spec, width, 8, s, seeds, 0, torch.float32, device)
    batches = np.stack([TR.batch_indices(0, sd, n, 40, steps) for sd in seeds])
    data = {"x_train": x[None].expand(len(seeds), *x.shape), "y_train": y}
    cfg = TR.TrainConfig(max_steps=steps, eval_every=10**9, batch_size=40)
    lr = torch.full((len(seeds),), 1e-3)
    TR.train(spec, p, data, 8, lr, 0.0, batches[:, :2], cfg, log=lambda m: None)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    TR.train(spec, p, data, 8, lr, 0.0, batches, cfg, log=lambda m: None)
    sync(device)
    return time.perf_counter() - t0


def conv_share(arch: str, width: int, s: int, steps: int, device: torch.device) -> float:
    """Fraction of one sequential (1-seed) run's CPU time spent inside convolution and matmul kernels.

    Stacking seeds can only remove the rest (per-op overhead), unless the stacked
    convolution itself runs faster per seed, so 1 / share bounds the ratio."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(arch, width, [0], s, steps, device, "circular")
    ev = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ev)
    conv = sum(e.self_cpu_time_total for e in ev if "conv" in e.key or e.key in ("aten::bmm", "aten::mm"))
    return conv / total


def step_flops(arch: str, width: int, n_seeds: int, s: int, depth: int = 8, batch: int = 40) -> float:
    """FLOPs of one SGD step (forward + backward = 3 x forward) for all seeds."""
    return 3 * M.forward_flops(A.get(arch), width, depth, s) * batch * n_seeds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="vec")
    ap.add_argument("--widths", type=int, nargs="+", default=[24, 128])
    ap.add_argument("--image-size", type=int, default=8)
    ap.add_argument("--padding", choices=A.PADDINGS, default="circular", help="model.padding of the nets")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads (workflow jobs use 1)")
    a = ap.parse_args()
    dev = resolve_device(a.device)
    torch.set_num_threads(a.threads)
    peak = matmul_peak(dev)
    seeds = [0, 1, 2, 3, 4]
    print(f"device {dev}, {torch.get_num_threads()} threads; float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'arch':>5} {'width':>5} {'vectorized seed-steps/s':>24} {'sequential':>11} {'ratio':>6} "
          f"{'GFLOP/s (vec.)':>15} {'% of peak':>9} {'bound':>6}")
    for w in a.widths:
        t_vec = run(a.arch, w, seeds, a.image_size, a.steps, dev, a.padding)
        t_seq = sum(run(a.arch, w, [sd], a.image_size, a.steps, dev, a.padding) for sd in seeds)
        rate_vec, rate_seq = len(seeds) * a.steps / t_vec, len(seeds) * a.steps / t_seq
        bound = 1 / conv_share(a.arch, w, a.image_size, min(a.steps, 20), dev) if dev.type == "cpu" else float("nan")
        fl = step_flops(a.arch, w, len(seeds), a.image_size) * a.steps / t_vec
        print(f"{a.arch:>5} {w:>5} {rate_vec:24.1f} {rate_seq:11.1f} {rate_vec / rate_seq:5.2f}x "
              f"{fl / 1e9:15.2f} {100 * fl / peak:8.1f}% {bound:5.2f}x")


if __name__ == "__main__":
    main()
