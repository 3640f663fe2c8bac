"""Synergy and symmetry in deep learning: a reproducible study (Xiao & Pennington, ICML 2022)."""

__version__ = "0.1.0"


def _llvm_first() -> None:
    """Load Triton's LLVM before anything can load TensorFlow's (neural-tangents imports TensorFlow).

    Both register the same LLVM command-line options. In the order TensorFlow, then Triton (which
    torchvision >= 0.29 and timm import at import time, and torch the first time torch.func or
    torch.compile runs) the process segfaults; Triton first, both work. Every process of the study
    (CLI, rules, bench, tests) imports synsym before either library, so this one place makes the
    order safe everywhere; tests/test_imports.py checks it in fresh processes, both ways round."""
    import importlib.util
    import sys

    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


_llvm_first()
