"""Shared fixtures. The mini CIFAR-10 archive (never in git) comes from SYNSYM_MINI_DIR, ../shared beside
the clone, or is built once into data/cifar-10-mini from the official download."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import synsym  # noqa: F401  (first: it loads Triton's LLVM before any test module brings TensorFlow's)

ROOT = Path(__file__).resolve().parents[1]


def locate_mini(env: dict, root: Path) -> Path:
    """Where the tests' mini CIFAR-10 archive is: ``SYNSYM_MINI_DIR``, else ``../shared/data/cifar-10-mini``
    beside the clone, else ``data/cifar-10-mini`` (not in git), built there from the official download."""
    if env.get("SYNSYM_MINI_DIR"):
        return Path(env["SYNSYM_MINI_DIR"])
    shared = root.parent / "shared" / "data" / "cifar-10-mini"
    return shared if (shared / "MANIFEST").exists() else root / "data" / "cifar-10-mini"


def ensure_mini(d: Path, root: Path, url: str, md5: str) -> Path:
    """Build the mini archive in ``root/data/cifar-10-mini`` when nothing else provides one: download the
    official archive (md5-checked, kept in ``data/cifar10`` as the study's own download is) and keep the
    first images of each batch (``synsym.core.data.make_mini_archive``). A missing ``SYNSYM_MINI_DIR`` fails."""
    if (d / "MANIFEST").exists():
        return d
    if d != root / "data" / "cifar-10-mini":
        raise AssertionError(f"no MANIFEST in {d}: SYNSYM_MINI_DIR must name a folder holding the mini archive")
    from synsym.core import data

    data.make_mini_archive(data.download(url, md5, root / "data" / "cifar10"), d)
    return d


def official() -> tuple[str, str]:
    """config.yaml's data.url and data.md5: the official archive (as `synsym mini-archive` defaults to it)."""
    from synsym.pipeline.config import load_config

    d = load_config([], ROOT)["data"]
    return d["url"], d["md5"]


MINI = locate_mini(os.environ, ROOT)


def pytest_sessionstart(session) -> None:
    ensure_mini(MINI, ROOT, *official())


def mini_md5() -> str:
    for line in (MINI / "MANIFEST").read_text().splitlines():
        md5, name = line.split()
        if name == "cifar-10-python.tar.gz":
            return md5
    raise AssertionError("MANIFEST has no archive line")


@pytest.fixture(scope="session")
def mini_dir() -> Path:
    """The folder of the mini archive and its MANIFEST."""
    return MINI


@pytest.fixture(scope="session")
def mini_archive() -> tuple[str, str]:
    """(file:// URL, md5) of the real mini CIFAR-10 archive."""
    archive = MINI / "cifar-10-python.tar.gz"
    assert archive.exists(), f"mini CIFAR-10 archive missing at {archive} (MANIFEST without its archive)"
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
