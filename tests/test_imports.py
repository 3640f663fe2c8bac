"""One import order everywhere: synsym loads Triton's LLVM before TensorFlow's (neural-tangents), so a process
that imports synsym first may then import neural-tangents, torchvision and timm in any order. Each case runs in
a fresh process: the failure is a segfault (exit 139), which would kill the test session itself."""

import subprocess
import sys

import pytest

ORDERS = {
    "nt, then torchvision and timm": "import neural_tangents, torchvision, timm",
    "torchvision and timm, then nt": "import torchvision, timm, neural_tangents",
}


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})


@pytest.mark.slow
@pytest.mark.parametrize("order", list(ORDERS))
def test_after_synsym_every_order_is_safe(order):
    p = run(f"import synsym; {ORDERS[order]}; print('ok')")
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), (p.returncode, p.stderr[-1500:])


@pytest.mark.slow
def test_the_order_matters_without_synsym():
    """What synsym's import prevents: TensorFlow's LLVM first, then Triton's (via torchvision), segfaults.
    If a future stack fixes this, the test says so and synsym._llvm_first may go."""
    p = run("import neural_tangents, torchvision, timm; print('ok')")
    assert p.returncode != 0, "neural-tangents before torchvision no longer crashes: synsym._llvm_first is not needed"
