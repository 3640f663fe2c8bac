"""CIFAR-10: download with md5 check, parse the official batches, split, preprocess.

The loader only knows the official "CIFAR-10 python version" archive; tests
point ``data.url`` at a real subset in the same format through ``file://``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synsym.core.architectures import N_CLASSES
from synsym.core.seeding import rng

ARCHIVE = "cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


class DataError(RuntimeError):
    """Bad or missing data; the message is one line that says what to do."""


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, md5: str, data_dir: str | Path) -> Path:
    """Fetch and extract the archive into ``data_dir``; return the batch folder.

    The archive is downloaded to a temp name and renamed only once its md5
    matches; extraction goes to a temp folder that is renamed at the end, so
    an interrupted run never leaves something that looks complete.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    archive = data_dir / ARCHIVE
    batches = data_dir / BATCH_DIR
    if archive.exists() and md5sum(archive) != md5:
        archive.unlink()  # stale or foreign copy: fetch again
    if not archive.exists():
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".download-")
        os.close(fd)
        try:
            try:
                with urllib.request.urlopen(url) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            except (OSError, ValueError) as e:
                raise DataError(
                    f"could not download {url}: {e}; set data.url to a local copy "
                    f"(file:///abs/path/{ARCHIVE})"
                ) from None
            got = md5sum(Path(tmp))
            if got != md5:
                raise DataError(
                    f"md5 mismatch for {url}: expected {md5}, got {got} "
                    f"(truncated or wrong file, deleted); set data.url to a verified local "
                    f"copy (file:///abs/path/{ARCHIVE}) and data.md5 to its md5"
                )
            os.replace(tmp, archive)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    if not (batches / "test_batch").exists():
        tmpdir = Path(tempfile.mkdtemp(dir=data_dir, prefix=".extract-"))
        try:
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    tar.extractall(tmpdir, filter="data")
            except (tarfile.TarError, EOFError, OSError) as e:
                archive.unlink()  # corrupt despite its md5: do not keep it as "verified"
                raise DataError(f"cannot extract {archive}: {e} (archive deleted)") from None
            if not (tmpdir / BATCH_DIR / "test_batch").exists():
                raise DataError(f"{archive} has no {BATCH_DIR}/test_batch: not the CIFAR-10 python archive")
            if batches.exists():
                shutil.rmtree(batches)
            os.replace(tmpdir / BATCH_DIR, batches)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return batches


# The mini archive's shape: the first images of each official batch (5,170 training, 1,017 test), the size
# the tests and the 8x8 synergy presets (whose n_test_pool counts every training image) are written for.
MINI_TRAIN = (1102, 1017, 1017, 1017, 1017)
MINI_TEST = 1017


def make_mini_archive(batches: Path, out_dir: str | Path, n_train: tuple[int, ...] = MINI_TRAIN,
                      n_test: int = MINI_TEST) -> tuple[Path, str]:
    """Write a CIFAR-10 archive in the official format holding the first ``n_train[i]`` images of training
    batch i and the first ``n_test`` of the test batch, from the extracted official batches; return its
    path and md5, also written to ``out_dir/MANIFEST``.

    For machines without a ready-made subset (tests, the presets' ``data.url`` through ``file://``). The
    tar is byte-stable (sorted members, fixed owners and times, gzip without a timestamp), so the same
    source gives the same md5 everywhere; it is written under a temp name and renamed when whole."""
    import gzip
    import io

    if len(n_train) != len(TRAIN_BATCHES):
        raise DataError(f"mini archive: n_train needs {len(TRAIN_BATCHES)} counts, one a training batch; got {list(n_train)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    members = {"batches.meta": (batches / "batches.meta").read_bytes()}
    for name, n in [*zip(TRAIN_BATCHES, n_train), ("test_batch", n_test)]:
        with open(batches / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        if not 0 < n <= len(d[b"labels"]):
            raise DataError(f"mini archive: {name} has {len(d[b'labels'])} images; asked for {n}")
        d = {k: (v[:n] if k != b"batch_label" else v) for k, v in d.items()}
        members[name] = pickle.dumps(d, protocol=2)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(f"{BATCH_DIR}/{name}")
            info.size, info.mode, info.mtime = len(members[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(members[name]))
    archive = out_dir / ARCHIVE
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".mini-")
    with os.fdopen(fd, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    os.replace(tmp, archive)
    md5 = md5sum(archive)
    lines = [f"{md5}  {ARCHIVE}"] + [f"{hashlib.md5(members[n]).hexdigest()}  {BATCH_DIR}/{n}" for n in sorted(members)]
    (out_dir / "MANIFEST").write_text("\n".join(lines) + "\n")
    return archive, md5


def load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official batch as (N, 32, 32, 3) uint8 images and int64 labels."""
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    y = np.asarray(d[b"labels"], dtype=np.int64)
    return x, y


def load_cifar10(batches: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All training and test images, in the official order."""
    parts = [load_batch(batches / b) for b in TRAIN_BATCHES]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = load_batch(batches / "test_batch")
    return x_tr, y_tr, x_te, y_te


def balanced_order(y: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """A permutation of indices whose every prefix is as class-balanced as possible.

    Classes are shuffled internally, then interleaved round-robin, so the first
    m indices of the order serve every learning-curve size as a nested subset.
    """
    per_class = [gen.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    order = []
    for r in range(max(len(p) for p in per_class)):
        order.extend(p[r] for p in per_class if r < len(p))
    return np.asarray(order, dtype=np.int64)


def downsample(x: np.ndarray, image_size: int) -> np.ndarray:
    """Average-pool (N, 32, 32, C) images down to image_size (32 -> 16 -> 8)."""
    k = x.shape[1] // image_size
    if k * image_size != x.shape[1]:
        raise ValueError(f"image_size {image_size} must divide 32")
    n, h, w, c = x.shape
    return x.reshape(n, image_size, k, image_size, k, c).mean(axis=(2, 4))


@dataclass
class Split:
    """Preprocessed (untransformed) images and labels of one run."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def save(self, path: str | Path) -> None:
        from synsym.core.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **self.__dict__)

    @classmethod
    def load(cls, path: str | Path) -> Split:
        from synsym.core.io import reading

        with reading(path, "split"), np.load(path) as z:
            return cls(**{k: z[k] for k in z.files})


def make_split(
    batches: Path,
    n_train: int,
    n_val: int,
    n_test: int,
    n_test_pool: int,
    image_size: int,
    global_seed: int,
    allow_smaller: bool,
) -> Split:
    """Carve train/val from the training batches and test from the test batch.

    Class-balanced and deterministic from the global seed; standardized per
    channel with the training split's statistics (the symmetry transform is
    applied later, per cell, identically to all three parts).

    ``n_test_pool`` more test images come from the training batches' pool beyond the
    validation and training images (``order[n_val + n_train:]``), appended after the test
    batch's: a test set larger than the test batch alone, for archives whose test batch is
    small. Training sizes are prefixes of the training images, so the pool never overlaps any
    of them, and every cell of a run (kernels and finite nets alike) reads this one split.
    """
    x_tr, y_tr, x_te, y_te = load_cifar10(batches)
    avail_tr, avail_te = len(y_tr), len(y_te)
    if n_train + n_val + n_test_pool > avail_tr or n_test > avail_te:
        if not allow_smaller:
            raise DataError(
                f"asked for n_train+n_val+n_test_pool={n_train + n_val + n_test_pool} / n_test={n_test} images but "
                f"the archive has {avail_tr} / {avail_te}; lower the sizes or set data.allow_smaller: true"
            )
        n_val = min(n_val, avail_tr // 10)
        n_train = min(n_train, avail_tr - n_val)
        n_test = min(n_test, avail_te)
        n_test_pool = min(n_test_pool, avail_tr - n_val - n_train)
    order = balanced_order(y_tr, rng(global_seed, "split", "trainval"))
    # Validation takes every class equally from the head; training the rest in order; the pool after both.
    val_idx, train_idx = order[:n_val], order[n_val : n_val + n_train]
    pool_idx = order[n_val + n_train : n_val + n_train + n_test_pool]
    test_idx = balanced_order(y_te, rng(global_seed, "split", "test"))[:n_test]

    def prep(x: np.ndarray) -> np.ndarray:
        return downsample(x.astype(np.float64) / 255.0, image_size)

    xtr, xva = prep(x_tr[train_idx]), prep(x_tr[val_idx])
    xte = np.concatenate([prep(x_te[test_idx]), prep(x_tr[pool_idx])])
    mean = xtr.mean(axis=(0, 1, 2))
    std = xtr.std(axis=(0, 1, 2))
    return Split(
        (xtr - mean) / std, y_tr[train_idx],
        (xva - mean) / std, y_tr[val_idx],
        (xte - mean) / std, np.concatenate([y_te[test_idx], y_tr[pool_idx]]),
    )


def one_hot(y: np.ndarray) -> np.ndarray:
    """Targets of the MSE loss: one-hot over the 10 classes."""
    return np.eye(N_CLASSES)[y]


def flip_augment(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Append left-right flips (doubles the training set: Fig. 4's 90k point)."""
    return np.concatenate([x, x[:, :, ::-1, :]]), np.concatenate([y, y])


def training_subset(x: np.ndarray, y: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The first m training images (nested, balanced), or all plus flips when m = 2n."""
    n = len(y)
    if m <= n:
        return x[:m], y[:m]
    if m == 2 * n:
        return flip_augment(x, y)
    raise DataError(f"training size m={m} is neither <= n_train={n} nor 2*n_train (flips)")
