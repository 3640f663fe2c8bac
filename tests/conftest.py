"""Shared fixtures. The mini CIFAR-10 archive lives in ../shared (never in git)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import synsym  # noqa: F401  (first: it loads Triton's LLVM before any test module brings TensorFlow's)

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
    from synsym.core.data import download

    url, md5 = mini_archive
    return download(url, md5, tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="session")
def imagenet_tree(tmp_path_factory, mini_batches) -> Path:
    """An ImageNet-layout folder tree (train/<class>/*.JPEG, val/<class>/*.JPEG) made from the
    real mini CIFAR-10 archive: 10 classes, 16 train and 4 val images each, upsampled to 40x40."""
    from PIL import Image

    from synsym.core.data import load_cifar10

    x_tr, y_tr, x_te, y_te = load_cifar10(mini_batches)
    root = tmp_path_factory.mktemp("imagenet")
    for split, x, y, per in (("train", x_tr, y_tr, 16), ("val", x_te, y_te, 4)):
        for c in range(10):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for k, idx in enumerate(np.flatnonzero(y == c)[:per]):
                Image.fromarray(x[idx]).resize((40, 40), Image.BICUBIC).save(d / f"img_{k:03d}.JPEG", quality=95)
    return root
