"""Benchmark: training throughput of one cell, 5 seeds vectorized vs 5 sequential runs.

    python bench/training.py                       # vec at the default (24) and paper (128) widths, 8x8
    python bench/training.py --arch lcn --widths 16 32 --image-size 16 --device cuda

Same inputs, same number of SGD steps per seed. Prints seed-steps/s for both,
their ratio, and the achieved FLOP/s (counted by torch's FlopCounterMode for
one step) against a measured float32 matmul peak of the machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from synsym import architectures as A
from synsym import models as M
from synsym import training as TR


def matmul_peak(device: torch.device) -> float:
    n = 4096 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device)
    a @ a
    sync(device)
    t0 = time.perf_counter()
    for _ in range(5):
        a @ a
    sync(device)
    return 5 * 2 * n**3 / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(arch: str, width: int, seeds: list[int], s: int, steps: int, device: torch.device) -> float:
    """Seconds for `steps` SGD steps of the stacked seeds."""
    spec = A.get(arch)
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


def step_flops(arch: str, width: int, n_seeds: int, s: int) -> float:
    spec = A.get(arch)
    p = M.init_params(spec, width, 8, s, list(range(n_seeds)), 0)
    for v in p.values():
        v.requires_grad_(True)
    x = torch.randn(n_seeds, 40, s, s, 3)
    with FlopCounterMode(display=False) as fc:
        (M.apply(spec, p, x, 8) ** 2).sum().backward()
    return fc.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="vec")
    ap.add_argument("--widths", type=int, nargs="+", default=[24, 128])
    ap.add_argument("--image-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    dev = TR.resolve_device(a.device)
    torch.set_num_threads(torch.get_num_threads())
    peak = matmul_peak(dev)
    seeds = [0, 1, 2, 3, 4]
    print(f"device {dev}, {torch.get_num_threads()} threads; float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'arch':>5} {'width':>5} {'vectorized seed-steps/s':>24} {'sequential':>11} {'ratio':>6} "
          f"{'GFLOP/s (vec.)':>15} {'% of peak':>9}")
    for w in a.widths:
        t_vec = run(a.arch, w, seeds, a.image_size, a.steps, dev)
        t_seq = sum(run(a.arch, w, [sd], a.image_size, a.steps, dev) for sd in seeds)
        rate_vec, rate_seq = len(seeds) * a.steps / t_vec, len(seeds) * a.steps / t_seq
        fl = step_flops(a.arch, w, len(seeds), a.image_size) * a.steps / t_vec
        print(f"{a.arch:>5} {w:>5} {rate_vec:24.1f} {rate_seq:11.1f} {rate_vec / rate_seq:5.2f}x "
              f"{fl / 1e9:15.2f} {100 * fl / peak:8.1f}%")


if __name__ == "__main__":
    main()
