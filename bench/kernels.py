"""Benchmark: conv-family NNGP+NTK kernels, side by side on the same images.

    python bench/kernels.py                 # 8x8 and 16x16, sizes chosen for ~10-60 s per case
    python bench/kernels.py --sizes 8:64 16:16
    python bench/kernels.py --device cuda --sizes 8:256 16:64 32:16   # on a GPU (nt cases need jax[cuda])

Cases (each in its own process, so peak memory is its own):
  nt_naive   one nt.batch(kernel_fn) call per architecture (vec, lcn, gap, lap4, lap8), full matrix
  nt_shared  neural-tangents, one conv-stack pass per block + all readouts, upper triangle only
  fast_eager synsym.ntk.engine's eager torch path (SYNSYM_FUSED=0; what CUDA runs), same blocking and triangle
  fast       synsym.ntk.engine as the workflow runs it: the fused C++ kernel on a CPU,
             the fused Triton kernel with --device cuda
  fast_zero  the same with zero padding (model.padding: zero): the fused C++ kernel's rectangles of
             valid pixels on a CPU; eager torch on a GPU (the Triton kernel is circular only)
Reports ms per kernel entry (one image pair, every readout), peak RSS, and the
fast engine's achieved FLOP/s against a measured float64 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
DEPTH = 8  # the paper's; --smoke: 2 (the tests' run: neural-tangents' compile time grows with depth)


def images(m: int, s: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((m, s, s, 3))


def run_case(case: str, m: int, s: int, device: str, depth: int) -> dict:
    """Time the case twice in one process: the first run includes JIT compilation,
    the second is the steady-state cost that ms/entry reports."""
    cold = compute(case, m, s, device, depth)
    warm = compute(case, m, s, device, depth)
    return {"case": case, "m": m, "s": s, "cold_s": cold, "wall_s": warm, "ms_per_entry": 1e3 * warm / (m * m),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def compute(case: str, m: int, s: int, device: str, depth: int) -> float:
    x = images(m, s)
    t0 = time.perf_counter()
    if case == "nt_naive":
        from synsym.core import architectures as A
        from synsym.ntk import reference as REF

        REF._jax()  # float64 (synsym's import loaded Triton's LLVM before TensorFlow's)
        import neural_tangents as nt

        for arch in ("vec", "lcn", "gap", "lap4", "lap8"):
            fn = nt.batch(REF.stax_kernel_fn(A.get(arch, "circular"), depth), batch_size=max(1, m // 4))
            np.asarray(fn(x, None, ("nngp", "ntk")).ntk)
    else:
        from synsym.ntk import kernels as K

        if case == "fast_eager":
            os.environ["SYNSYM_FUSED"] = "0"
        engine = "neural_tangents" if case == "nt_shared" else "fast"
        K.compute_family("conv", x, {}, depth, block_size=max(1, m // 4), max_memory_gb=8.0,
                         log=lambda _: None, engine=engine, device=device, precision="float64",
                         padding="zero" if case.endswith("_zero") else "circular")
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - t0


def flops_per_entry(s: int, depth: int) -> float:
    from synsym.ntk.engine import flops_per_entry as fpe

    return fpe(s, depth)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=["8:48", "16:12"], help="image_size:m pairs")
    p.add_argument("--case")
    p.add_argument("--device", default="cpu", help="cpu, or cuda: fast = fused Triton kernel")
    p.add_argument("--cases", nargs="+", default=["nt_naive", "nt_shared", "fast_eager", "fast", "fast_zero"])
    p.add_argument("--smoke", action="store_true", help="depth 2 and a small matmul for the peak: every case runs, the "
                   "times mean nothing (the tests)")
    a = p.parse_args()
    depth = 2 if a.smoke else DEPTH
    if a.case:  # child process
        s, m = map(int, a.sizes[0].split(":"))
        print(json.dumps(run_case(a.case, m, s, a.device, depth)))
        return
    import torch
    from _common import matmul_peak  # bench/_common.py

    peak = matmul_peak(a.device, torch.float64, 256 if a.smoke else None)
    where = f"{os.cpu_count()} cores" if a.device == "cpu" else __import__("torch").cuda.get_device_name()
    print(f"float64 matmul peak on this machine: {peak / 1e9:.1f} GFLOP/s ({where})")
    print("ms/entry = steady-state seconds (second run in the process) per entry of the m x m matrix")
    print(f"{'size':>6} {'m':>4} {'case':>10} {'cold s':>7} {'warm s':>7} {'ms/entry':>9} {'peak MB':>8} {'speedup':>8}")
    for spec in a.sizes:
        rows = {}
        for case in a.cases:
            out = subprocess.run([sys.executable, __file__, "--case", case, "--sizes", spec, "--device", a.device]
                                 + ["--smoke"] * a.smoke, capture_output=True, text=True, check=True).stdout
            rows[case] = json.loads(out.strip().splitlines()[-1])
        base = rows[a.cases[0]]["ms_per_entry"]
        for case, r in rows.items():
            print(f"{r['s']:>4}x{r['s']:<2}{r['m']:>4} {case:>10} {r['cold_s']:7.1f} {r['wall_s']:7.1f} {r['ms_per_entry']:9.3f} "
                  f"{r['peak_mb']:8.0f} {base / r['ms_per_entry']:7.1f}x")
        if "fast_zero" in rows:
            print(f"       zero padding / circular (fast engine, same images): "
                  f"{rows['fast_zero']['ms_per_entry'] / rows['fast']['ms_per_entry']:.2f}x the time per entry")
        s = rows["fast"]["s"]
        # the engine computes the upper triangle (m(m+1)/2 pairs) of the m x m matrix
        m = rows["fast"]["m"]
        achieved = flops_per_entry(s, depth) * m * (m + 1) / 2 / rows["fast"]["wall_s"]
        print(f"       fast engine: {flops_per_entry(s, depth) / 1e6:.2f} MFLOP per pair (assumed count), "
              f"{achieved / 1e9:.2f} GFLOP/s = {100 * achieved / peak:.1f}% of the float64 matmul peak")


if __name__ == "__main__":
    main()
