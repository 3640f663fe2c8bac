"""Synergy and symmetry in deep learning: a reproducible study (Xiao & Pennington, ICML 2022)."""

__version__ = "0.1.0"


def _llvm_first() -> None:
    """Load Triton's LLVM before anything can load TensorFlow's (neural-tangents imports TensorFlow).

    Both register the same LLVM command-line options. In the order TensorFlow, then Triton (which
    torchvision >= 0.29 and timm import at import time, and torch the first time torch.func or
    torch.compile runs) the process segfaults; Triton first, both work. Every process of the study
    (CLI, rules, bench, tests) imports synsym before either library, so this one place makes the
    order safe everywhere; tests/test_imports.py checks it in fresh processes, both ways round.

    Without a GPU, Triton's interpreter must be on before Triton is imported (Triton's own library
    functions are jitted at its import, and an interpreted kernel cannot call compiled ones), so the
    interpreter switch of synsym.ntk.fused_triton happens here, judged by the NVIDIA device files
    (importing torch to ask it would slow every DAG build)."""
    import importlib.util
    import os
    import sys

    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        gpu = os.path.exists("/dev/nvidia0") and os.environ.get("CUDA_VISIBLE_DEVICES", "x") not in ("", "-1")
        if not gpu:
            os.environ.setdefault("TRITON_INTERPRET", "1")
        import triton  # noqa: F401


_llvm_first()
