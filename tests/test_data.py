"""The real CIFAR-10 loader on the mini archive: counts, labels, balance, md5, atomicity."""

import gzip

import numpy as np
import pytest

from synsym.core import data as D


def test_loader_counts_dtypes_labels(mini_batches):
    x_tr, y_tr, x_te, y_te = D.load_cifar10(mini_batches)
    assert x_tr.shape == (5170, 32, 32, 3) and x_tr.dtype == np.uint8
    assert x_te.shape == (1017, 32, 32, 3) and y_te.dtype == np.int64
    assert list(y_tr[:5]) == [6, 9, 9, 4, 1]
    assert set(np.unique(y_tr)) == set(range(10))


def test_split_balanced_standardized_deterministic(mini_batches):
    s = D.make_split(mini_batches, 200, 50, 100, 0, 8, 0, False)
    assert s.x_train.shape == (200, 8, 8, 3)
    assert np.bincount(s.y_train, minlength=10).tolist() == [20] * 10
    assert np.bincount(s.y_val, minlength=10).tolist() == [5] * 10
    np.testing.assert_allclose(s.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(s.x_train.std(axis=(0, 1, 2)), 1, atol=1e-12)
    again = D.make_split(mini_batches, 200, 50, 100, 0, 8, 0, False)
    assert np.array_equal(s.x_train, again.x_train) and np.array_equal(s.y_test, again.y_test)
    other = D.make_split(mini_batches, 200, 50, 100, 0, 8, 1, False)
    assert not np.array_equal(s.y_train, other.y_train) or not np.array_equal(s.x_train, other.x_train)
    # prefixes are balanced too (nested learning-curve subsets)
    assert np.bincount(s.y_train[:50], minlength=10).tolist() == [5] * 10


def test_test_pool_extends_the_test_set_beyond_every_training_image(mini_batches):
    """data.n_test_pool: the test batch's images first, unchanged, then the training pool beyond the validation
    and training images, disjoint from both; the pool is what a larger n_train would train on next."""
    base = D.make_split(mini_batches, 200, 50, 100, 0, 8, 0, False)
    s = D.make_split(mini_batches, 200, 50, 100, 300, 8, 0, False)
    assert len(s.y_test) == 400
    assert np.array_equal(s.x_train, base.x_train) and np.array_equal(s.x_val, base.x_val)
    assert np.array_equal(s.x_test[:100], base.x_test) and np.array_equal(s.y_test[:100], base.y_test)
    seen = {r.tobytes() for r in np.concatenate([s.x_train, s.x_val])}  # one standardization: equal rows = one image
    assert not any(r.tobytes() in seen for r in s.x_test[100:])
    bigger = D.make_split(mini_batches, 500, 50, 100, 0, 8, 0, False)
    assert np.array_equal(s.y_test[100:], bigger.y_train[200:])
    # the whole archive: 5,170 training images leave 5,170 - 250 for the pool, and no more
    with pytest.raises(D.DataError, match="n_test_pool"):
        D.make_split(mini_batches, 200, 50, 100, 4921, 8, 0, False)
    assert len(D.make_split(mini_batches, 200, 50, 100, 4921, 8, 0, True).y_test) == 100 + 4920


def test_downsample_is_average_pooling():
    x = np.arange(2 * 32 * 32 * 3, dtype=float).reshape(2, 32, 32, 3)
    y = D.downsample(x, 16)
    assert y.shape == (2, 16, 16, 3)
    assert y[0, 0, 0, 0] == x[0, :2, :2, 0].mean()


def test_too_many_images_fails_unless_allowed(mini_batches):
    with pytest.raises(D.DataError, match="allow_smaller"):
        D.make_split(mini_batches, 45000, 5000, 10000, 0, 8, 0, False)
    s = D.make_split(mini_batches, 45000, 5000, 10000, 0, 8, 0, True)
    assert len(s.y_test) == 1017 and len(s.y_train) + len(s.y_val) <= 5170


def test_flip_doubles_training_set():
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 3))
    y = np.arange(4)
    xs, ys = D.training_subset(x, y, 8)
    assert len(xs) == 8 and np.array_equal(xs[4:], x[:, :, ::-1]) and np.array_equal(ys[4:], y)
    with pytest.raises(D.DataError):
        D.training_subset(x, y, 6)


def test_md5_mismatch_fails_clearly_and_leaves_nothing(tmp_path, mini_archive):
    url, md5 = mini_archive
    bad = "0" * 32
    with pytest.raises(D.DataError) as e:
        D.download(url, bad, tmp_path / "d")
    msg = str(e.value)
    assert url in msg and bad in msg and md5 in msg and "file://" in msg and "\n" not in msg
    assert list((tmp_path / "d").iterdir()) == []


def test_truncated_archive_fails_and_leaves_nothing(tmp_path, mini_archive):
    url, md5 = mini_archive
    src = url[len("file://") :]
    cut = tmp_path / "cut.tar.gz"
    with open(src, "rb") as f, open(cut, "wb") as g:
        g.write(f.read(1_000_000))
    with pytest.raises(D.DataError, match="md5 mismatch"):
        D.download(cut.as_uri(), md5, tmp_path / "d")
    assert list((tmp_path / "d").iterdir()) == []
    # A truncated archive whose md5 is declared (so it passes the check) fails at extraction.
    with pytest.raises(D.DataError, match="cannot extract"):
        D.download(cut.as_uri(), D.md5sum(cut), tmp_path / "e")
    assert list((tmp_path / "e").iterdir()) == []


def test_download_skipped_when_verified(tmp_path, mini_archive):
    url, md5 = mini_archive
    d = tmp_path / "d"
    D.download(url, md5, d)
    # A bogus URL still works because the verified archive is already there.
    D.download("file:///nonexistent/cifar.tar.gz", md5, d)


def test_missing_url_is_clear(tmp_path):
    with pytest.raises(D.DataError, match="could not download"):
        D.download("file:///nonexistent/cifar.tar.gz", "0" * 32, tmp_path)


def test_not_a_gzip(tmp_path):
    f = tmp_path / "x.tar.gz"
    with gzip.open(f, "wb") as g:
        g.write(b"hello")
    with pytest.raises(D.DataError, match="cannot extract"):
        D.download(f.as_uri(), D.md5sum(f), tmp_path / "d")
    assert list((tmp_path / "d").iterdir()) == []


def test_mini_archive_builder_keeps_the_first_images_of_each_batch(tmp_path, mini_archive, mini_batches):
    """`synsym mini-archive`, as a clone without ../shared builds its tests' archive: from an official-format
    archive (here the mini one through file://, offline), md5-checked, the first images of every batch in the
    official format, with a MANIFEST whose md5 is the archive's; the bytes do not depend on when it ran."""
    import subprocess
    import sys

    url, md5 = mini_archive

    def build(out: str) -> tuple[subprocess.CompletedProcess, str]:
        p = subprocess.run([sys.executable, "-m", "synsym.cli", "mini-archive", "--url", url, "--md5", md5,
                            "--out", str(tmp_path / out), "--download-dir", str(tmp_path / "official")],
                           capture_output=True, text=True, timeout=300)
        return p, (tmp_path / out / "MANIFEST").read_text().splitlines()[0].split()[0] if p.returncode == 0 else ""

    p, built = build("mini")
    assert p.returncode == 0, p.stderr[-2000:]
    assert built == D.md5sum(tmp_path / "mini" / D.ARCHIVE)
    x, y, xt, yt = D.load_cifar10(D.download((tmp_path / "mini" / D.ARCHIVE).as_uri(), built, tmp_path / "x"))
    x0, y0, xt0, yt0 = D.load_cifar10(mini_batches)
    assert len(y) == sum(D.MINI_TRAIN) and len(yt) == D.MINI_TEST
    assert np.array_equal(x, x0[:len(y)]) and np.array_equal(y, y0[:len(y)]) and np.array_equal(xt, xt0) and np.array_equal(yt, yt0)
    assert build("again")[1] == built  # byte-stable: sorted members, no timestamps
    small, md5_small = D.make_mini_archive(mini_batches, tmp_path / "small", (3, 2, 2, 2, 2), 4)
    xs, ys, xts, _ = D.load_cifar10(D.download(small.as_uri(), md5_small, tmp_path / "xs"))
    first = np.cumsum([0, *D.MINI_TRAIN[:-1]])  # where each source batch starts in x0
    assert np.array_equal(xs, np.concatenate([x0[s:s + n] for s, n in zip(first, (3, 2, 2, 2, 2))]))
    assert np.array_equal(xts, xt0[:4])
    with pytest.raises(D.DataError, match=r"^mini archive: test_batch has 1017 images; asked for 2000$"):
        D.make_mini_archive(mini_batches, tmp_path / "big", D.MINI_TRAIN, 2000)


def test_tests_find_or_build_their_mini_archive(tmp_path, mini_archive):
    """conftest's rule: SYNSYM_MINI_DIR, else ../shared beside the clone, else data/cifar-10-mini built from the
    official download (here a local official-format archive), once: a second call finds it."""
    from conftest import ensure_mini, locate_mini

    clone = tmp_path / "clone"
    assert str(locate_mini({"SYNSYM_MINI_DIR": "/x"}, clone)) == "/x"
    d = locate_mini({}, clone)
    assert d == clone / "data" / "cifar-10-mini"
    url, md5 = mini_archive
    ensure_mini(d, clone, url, md5)
    first = (d / "MANIFEST").read_text()
    assert (clone / "data" / "cifar10" / D.ARCHIVE).exists() and first.split()[0] == D.md5sum(d / D.ARCHIVE)
    assert ensure_mini(d, clone, "file:///nowhere", "0") == d and (d / "MANIFEST").read_text() == first
    (clone.parent / "shared" / "data" / "cifar-10-mini").mkdir(parents=True)
    (clone.parent / "shared" / "data" / "cifar-10-mini" / "MANIFEST").write_text(first)
    assert locate_mini({}, clone) == clone.parent / "shared" / "data" / "cifar-10-mini"
    with pytest.raises(AssertionError, match="SYNSYM_MINI_DIR must name"):
        ensure_mini(tmp_path / "elsewhere", clone, url, md5)
