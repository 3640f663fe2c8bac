"""The benchmarks the docs cite run: every case of bench/kernels.py once, at a tiny size (--smoke: depth 2)."""

import subprocess
import sys

import pytest
from helpers import ROOT


@pytest.mark.slow
def test_every_kernel_bench_case_runs():
    """Each case runs in its own process; nt_naive loads JAX/TensorFlow and then torch, whose Triton
    must come first (an LLVM clash aborts the process otherwise)."""
    p = subprocess.run([sys.executable, str(ROOT / "bench/kernels.py"), "--smoke", "--sizes", "8:4"], capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [ln.split() for ln in p.stdout.splitlines() if ln.strip().startswith("8x8")]
    assert [r[2] for r in rows] == ["nt_naive", "nt_shared", "fast_eager", "fast", "fast_zero"], p.stdout
    assert all(float(r[5]) > 0 for r in rows)  # ms per entry
    assert "zero padding / circular" in p.stdout and "GFLOP/s" in p.stdout.splitlines()[-1]


@pytest.mark.slow
def test_loader_bench_times_both_decoders():
    p = subprocess.run([sys.executable, str(ROOT / "bench/loader.py"), "--images", "8"], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    rates = {ln.split("  ")[1].strip(): float(ln.split()[-4]) for ln in p.stdout.splitlines() if "images/s per core" in ln}
    assert set(rates) == {"PIL decode", "torchvision.io decode", "PIL decode + crop 224", "torchvision decode + v2 crop 224"}
    assert all(v > 0 for v in rates.values()) and "torchvision / PIL" in p.stdout


# bench/gpu.py once, at its smallest size, every section in an order other than the default (so the run shows
# both that every section works and that --sections sets the order): the two tests below read it
GPU_SECTIONS = ["roots", "kernels", "history", "blocks", "training", "imagenet"]


@pytest.fixture(scope="module")
def gpu_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu.md"
    p = subprocess.run([sys.executable, str(ROOT / "bench/gpu.py"), "--smoke", "--device", "cpu", "--out", str(out),
                        "--sizes", "4", "--sections", *GPU_SECTIONS], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return out.read_text(), p.stderr


@pytest.mark.slow
def test_gpu_bench_runs_its_every_section(gpu_bench):
    """bench/gpu.py at tiny sizes on the CPU (Triton interpreted): the report has every section and
    the fused kernel agrees with the eager path (float64 to 1e-12)."""
    text, stderr = gpu_bench
    for section in ("## Conv-family kernel", "## Kernel block shapes", "## The kernel's square root", "## Training steps",
                    "## ImageNet", "CPU loader"):
        assert section in text, section
    # the kernel's square root within 1 ulp of IEEE's on every argument, its arccos within 1e-15 of torch's
    section = text.split("## The kernel's square root")[1].split("##")[0]
    vals = {ln.split("|")[1].strip(): float(ln.split("|")[3]) for ln in section.splitlines()
            if ln.startswith(("| sqrt", "| arccos"))}
    assert vals["sqrt, max ulp from IEEE (numpy)"] <= 1 and vals["arccos, max abs. diff from torch.arccos"] < 1e-15, vals
    # every speed switch timed beside today's path
    assert "| today | tf32 | tf32+nhwc | tf32+per_seed | tf32+compile |" in text and "Summed over the mix" in text
    f64 = [ln.split("|") for ln in text.splitlines() if "| float64 |" in ln]
    assert len(f64) == 1 and all(float(r[5]) < 1e-12 for r in f64), f64  # the first 3 of 6 images at 4x4 (m eager)
    assert [c.strip() for c in f64[0][1:4]] == ["4x4", "6", "3"], f64  # Triton on 6 images, eager on 3 (m eager)
    # two block shapes at the one image size, each agreeing with the eager path
    section = text.split("## Kernel block shapes")[1].split("##")[0]
    shapes = [ln.split("|") for ln in section.splitlines() if ln.startswith(("| 4x4", "| 8x8"))]
    assert len(shapes) == 2 and all(float(r[6]) < 1e-12 for r in shapes), shapes  # after the register cap
    # the kernel of a63fa24 (measured on the H200) timed beside this checkout's, each agreeing
    # with the eager path (a clone without that history skips the section, saying so)
    if "## The kernel against earlier revisions" in text:
        section = text.split("## The kernel against earlier revisions")[1].split("##")[0]
        rows = [ln.split("|") for ln in section.splitlines() if ln.startswith(("| 4x4", "| 8x8"))]
        assert [r[3].strip() for r in rows] == ["this checkout", "a63fa24"], rows
        assert all(float(r[4]) < 1e-12 and float(r[6].strip().rstrip("x")) > 0 for r in rows), rows
    else:
        assert "no earlier kernels to time" in stderr, stderr[-2000:]


@pytest.mark.slow
def test_gpu_bench_runs_chosen_sections_in_order(gpu_bench, tmp_path):
    """--sections and --sizes: the sections in that order, each in the report as soon as it is done (a device run
    cut short by its time limit keeps what finished), only the sizes asked for; an unknown size stops at once."""
    text, stderr = gpu_bench
    assert 0 < text.index("## The kernel's square root") < text.index("## Conv-family kernel"), text
    assert "| 8x8 |" not in text, text
    took = [ln.split() for ln in stderr.splitlines() if " took " in ln]
    assert [t[1] for t in took] == GPU_SECTIONS and len({t[-1] for t in took}) == 1, stderr  # one report, rewritten
    cmd = [sys.executable, str(ROOT / "bench/gpu.py"), "--smoke", "--device", "cpu", "--out", str(tmp_path / "gpu.md")]
    p = subprocess.run(cmd + ["--sizes", "5"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode != 0 and p.stderr.strip().splitlines()[-1] == "bench/gpu.py: --sizes [5] unknown; this preset has [4, 8]"
    assert not (tmp_path / "gpu.md").exists()


@pytest.mark.slow
def test_max_lr_bench_brackets_the_largest_c(tmp_path):
    """bench/max_lr.py at a tiny budget: each row's c_max trains and c_fail does not (a bracket, or
    an edge of the range), and c_max under the plain reading is (1 + momentum) x the momentum one."""
    import csv

    out = tmp_path / "max_lr.csv"
    p = subprocess.run([sys.executable, str(ROOT / "bench/max_lr.py"), "--archs", "fcn", "--seeds", "0", "1",
                        "--budget", "20", "--bisections", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    assert [r["seed"] for r in rows] == ["0", "1"] and all(r["bisections"] == "2" for r in rows)
    for r in rows:
        lo, hi = float(r["c_max_momentum"]), float(r["c_fail_momentum"])
        assert 1 <= lo < hi <= 256 or lo != lo or hi == float("inf"), r  # NaN: no bracket at c = 1
        assert float(r["c_max_plain"]) == pytest.approx(1.9 * lo, nan_ok=True)
    assert "momentum reading: NN+ (c = 8) sits" in p.stdout
