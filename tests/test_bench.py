"""The benchmarks README cites run: every case of bench/kernels.py once, at a tiny size."""

import subprocess
import sys

import pytest
from helpers import ROOT


@pytest.mark.slow
def test_every_kernel_bench_case_runs():
    """Each case runs in its own process; nt_naive loads JAX/TensorFlow and then torch, whose Triton
    must come first (an LLVM clash aborts the process otherwise)."""
    p = subprocess.run([sys.executable, str(ROOT / "bench/kernels.py"), "--sizes", "8:4"], capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [ln.split() for ln in p.stdout.splitlines() if ln.strip().startswith("8x8")]
    assert [r[2] for r in rows] == ["nt_naive", "nt_shared", "fast_eager", "fast"], p.stdout
    assert all(float(r[5]) > 0 for r in rows)  # ms per entry
    assert "GFLOP/s" in p.stdout.splitlines()[-1]
