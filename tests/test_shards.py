"""Kernel jobs a cluster accepts: row-block shards that equal the one-piece kernel, read back
lazily, and regressions that factor K_tt once per ridge."""

import json

import numpy as np
import pytest
from helpers import kernel_args

from synsym.ntk import kernels as K
from synsym.ntk import regression as REG

SIZES = {"train": 23, "val": 7, "test": 9}  # partial last blocks everywhere (block 4)


@pytest.fixture(scope="module")
def xs():
    g = np.random.default_rng(0)
    return {k: g.standard_normal((n, 8, 8, 3)) for k, n in SIZES.items()}


@pytest.fixture(scope="module")
def one_piece(xs):
    return {fam: K.compute_family(fam, xs["train"], {"val": xs["val"], "test": xs["test"]}, 3, 4, 1.0,
                                  **kernel_args()) for fam in ("fcn", "conv")}


def shards(xs, tmp_path, fam: str, n: int) -> list:
    dirs = [tmp_path / fam / "s0" / f"shard{k}" for k in range(n)]
    for k, d in enumerate(dirs):
        K.compute_shard(fam, xs, 3, 4, 1.0, k, n, d, {"transform": "identity", "seed": 0}, **kernel_args())
    return dirs


@pytest.mark.parametrize("fam,n", [("conv", 3), ("conv", 1), ("fcn", 4)])
def test_sharded_equals_one_piece(xs, one_piece, tmp_path, fam, n):
    """Every readout, NNGP and NTK, train-train (triangle, mirrored) and val/test-train (cross)."""
    kern = K.load_kernels(shards(xs, tmp_path, fam, n))
    ref = one_piece[fam]
    assert sorted(kern) == sorted(ref)
    for key in ref:
        np.testing.assert_allclose(kern[key], ref[key], rtol=1e-12, atol=0)
        assert np.array_equal(kern[key], ref[key]), key  # the same block calls: bit for bit
    m = 10  # a learning-curve size: the first m images, without assembling the rest
    assert np.array_equal(kern.matrix("train_train", "fcn" if fam == "fcn" else "gap", "ntk", m),
                          ref[f"train_train/{'fcn' if fam == 'fcn' else 'gap'}/ntk"][:m, :m])
    assert np.array_equal(kern.matrix("test_train", "fcn" if fam == "fcn" else "lap4", "nngp", m),
                          ref[f"test_train/{'fcn' if fam == 'fcn' else 'lap4'}/nngp"][:, :m])


def test_shards_are_files_one_per_readout_and_kind(xs, tmp_path):
    d = shards(xs, tmp_path, "conv", 2)
    files = sorted(p.name for p in d[1].iterdir())
    assert files == sorted([f"{a}__{k}.npy" for a in ("vec", "gap", "lap4", "lap8") for k in ("nngp", "ntk")] + ["rows.json"])
    rows = json.loads((d[1] / "rows.json").read_text())["rows"]
    assert np.load(d[1] / "gap__ntk.npy", mmap_mode="r").shape == (sum(i1 - i0 for _, i0, i1 in rows), SIZES["train"])


def test_shard_rows_cover_every_block_once_and_balance_the_calls():
    sizes, b = {"train": 1000, "val": 130, "test": 250}, 16
    blocks = K.row_blocks(sizes, b)
    for n in (1, 2, 7, len(blocks)):
        parts = K.shard_rows(sizes, b, n)
        assert len(parts) == n and all(parts) and [blk for p in parts for blk in p] == blocks
        calls = [sum(K.block_calls(blk, 1000, b) for blk in p) for p in parts]
        assert max(calls) - min(calls) <= 2 * 63, calls  # within two row blocks' worth (63 column blocks)
    with pytest.raises(ValueError, match=f"allowed: 1 to {len(blocks)}"):
        K.shard_rows(sizes, b, len(blocks) + 1)


def test_an_incomplete_set_of_shards_is_refused(xs, tmp_path):
    d = shards(xs, tmp_path, "conv", 3)
    with pytest.raises(ValueError, match="not one complete set of shards"):
        K.load_kernels(d[:2])


def test_regression_on_shards_equals_regression_in_memory(xs, one_piece, tmp_path):
    kern = K.load_kernels(shards(xs, tmp_path, "conv", 3))
    g = np.random.default_rng(1)
    y = {k: g.integers(0, 10, n) for k, n in SIZES.items()}
    for m in (12, 23):
        a = REG.regress(kern, "gap", "ntk", y["train"], y["val"], y["test"], [1e-6, 1e-3, 1e-1], m, device="cpu")
        b = REG.regress(one_piece["conv"], "gap", "ntk", y["train"], y["val"], y["test"], [1e-6, 1e-3, 1e-1], m, device="cpu")
        for k in a:
            assert np.array_equal(a[k], b[k]), k


def test_each_ridge_is_factored_once(one_piece, monkeypatch):
    """The validation solve's factor also gives the test and train predictions."""
    calls = []
    real = REG._factor
    monkeypatch.setattr(REG, "_factor", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    y = np.arange(SIZES["train"]) % 10
    r = REG.regress(one_piece["conv"], "vec", "nngp", y, np.arange(7) % 10, np.arange(9) % 10, [1e-4, 1e-2, 1e-1], device="cpu")
    assert calls == [0.0, 1e-4, 1e-2, 1e-1] and r["ridge"] in calls  # 0.0: K_tt itself factors (ridgeless)


def test_ridgeless_limit_is_the_smallest_ridge_that_factors():
    """A rank-deficient K_tt (duplicate images) does not factor at 0; the ridgeless candidate is the
    first RIDGELESS ridge that does, and a regression whose validation set is its training set
    picks it (it interpolates: MSE 0 breaks the accuracy tie with larger ridges)."""
    gen = np.random.default_rng(0)
    x = gen.standard_normal((12, 5))
    x[6:] = x[:6]  # rank 5 < 12
    k = x @ x.T
    r, _ = REG._ridgeless_factor(k, "cpu")
    assert r > 0 and r in REG.RIDGELESS
    for smaller in [q for q in REG.RIDGELESS if q < r]:
        with pytest.raises(np.linalg.LinAlgError):
            REG._factor(k, smaller, "cpu")
    k_full = k + 0.5 * np.eye(12)  # full rank: ridgeless is Eq. 6 itself, ridge 0
    assert REG._ridgeless_factor(k_full, "cpu")[0] == 0.0
    y = np.arange(12) % 10
    kern = {f"{s}_train/fcn/ntk": k_full for s in ("train", "val", "test")}
    got = REG.regress(kern, "fcn", "ntk", y, y, y, [1e-2, 1e-1], device="cpu")
    assert got["ridgeless"] and got["ridge"] == 0.0 and got["test_mse"] < 1e-20
    no = REG.regress(kern, "fcn", "ntk", y, y, y, [1e-2, 1e-1], device="cpu", ridgeless=False)
    assert not no["ridgeless"] and no["ridge"] == 1e-2


def test_a_fixed_ridge_is_used_as_given(one_piece):
    """A learning curve holds the ridge picked at its largest size: fixed_ridge skips the choice."""
    k = one_piece["conv"]
    y = np.arange(SIZES["train"]) % 10
    got = REG.regress(k, "gap", "ntk", y, np.arange(7) % 10, np.arange(9) % 10, [1e-4, 1e-1], 12, device="cpu", fixed_ridge=1e-1)
    want = REG.solve(k["train_train/gap/ntk"][:12, :12], k["test_train/gap/ntk"][:, :12], np.eye(10)[y[:12]], 1e-1, "cpu")
    assert got["ridge"] == 1e-1 and not got["ridgeless"]
    np.testing.assert_array_equal(got["test_pred"], want)


def test_gpu_cholesky_path_equals_lapack(one_piece):
    """The torch path (what device: cuda runs) against LAPACK, here on CPU tensors."""
    k = one_piece["conv"]["train_train/gap/ntk"]
    y = np.eye(10)[np.arange(len(k)) % 10]
    for ridge in (1e-6, 1e-2):
        a = REG._weights(REG._factor(k, ridge, "cpu"), y)
        b = REG._weights(REG._factor(k, ridge, "cpu", lib="torch"), y)
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9 * np.abs(a).max())
