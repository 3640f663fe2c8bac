"""Shared fixtures. The mini CIFAR-10 archive lives in ../shared (never in git)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:  # Triton's LLVM before TensorFlow's (neural-tangents): the reverse order aborts (synsym.kernels._llvm_first)
    import triton  # noqa: F401
except ImportError:
    pass

ROOT = Path(__file__).resolve().parents[1]
MINI = Path(os.environ.get("SYNSYM_MINI_DIR", ROOT.parent / "shared" / "data" / "cifar-10-mini"))


def mini_md5() -> str:
    for line in (MINI / "MANIFEST").read_text().splitlines():
        md5, name = line.split()
        if name == "cifar-10-python.tar.gz":
            return md5
    raise AssertionError("MANIFEST has no archive line")


@pytest.fixture(scope="session")
def mini_archive() -> tuple[str, str]:
    """(file:// URL, md5) of the real mini CIFAR-10 archive."""
    archive = MINI / "cifar-10-python.tar.gz"
    assert archive.exists(), f"mini CIFAR-10 archive missing at {archive} (tests need ../shared beside the repo)"
    return archive.as_uri(), mini_md5()


@pytest.fixture(scope="session")
def mini_batches(tmp_path_factory, mini_archive):
    from synsym.data import download

    url, md5 = mini_archive
    return download(url, md5, tmp_path_factory.mktemp("cifar"))
