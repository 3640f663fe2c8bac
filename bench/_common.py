"""What the benchmarks share: waiting for a device, and the machine's matmul peak that ratios are read against.

The scripts run as ``python bench/<name>.py`` with the package installed, so Python finds this module (and
``history``) beside them and ``synsym`` in the environment; no script edits ``sys.path``.
"""

from __future__ import annotations

import time

import torch


def sync(device: str | torch.device) -> None:
    """Wait for queued GPU work, so a timer reads the work and not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: str | torch.device, dtype: torch.dtype = torch.float32, n: int | None = None) -> float:
    """FLOP/s of square (n x n) matmuls: the best of 5 timings of 5 products (a shared machine's noise only slows
    a run down, so the best is the machine's). n: 4096 on a GPU, 2048 on a CPU unless given."""
    device = torch.device(device)
    n = n or (4096 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    a @ a
    best = float("inf")
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(5):
            a @ a
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 5 * 2 * n**3 / best
