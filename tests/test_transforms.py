"""The five symmetry transforms and the SO(3)^d path (paper Sec. 4, App. B.3, E)."""

import numpy as np
import pytest

from synsym.core import transforms as T
from synsym.core.seeding import rng

S = 8  # 8x8x3 images: d = 64, 3d = 192


def x_batch(n=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, S, S, 3))


@pytest.mark.parametrize("tid", list(T.TRANSFORMS) + ["so3_path-t0.5"])
def test_orthogonal_and_preserves_geometry(tid):
    tau = T.make(tid, S, 0, 0)
    m = tau.matrix(S, S)
    assert np.abs(m @ m.T - np.eye(3 * S * S)).max() < 1e-10
    x = x_batch()
    tx = tau.apply(x)
    f, g = x.reshape(len(x), -1), tx.reshape(len(x), -1)
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), np.linalg.norm(f, axis=1), rtol=1e-12)
    np.testing.assert_allclose(g @ g.T, f @ f.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g, f @ m.T, atol=1e-12)  # matrix() agrees with apply()


def test_identity_is_identity():
    x = x_batch()
    assert np.array_equal(T.make("identity", S, 0, 0).apply(x), x)


def shift(x, dh, dw):
    return np.roll(x, (dh, dw), axis=(1, 2))


def test_shared_rotation_commutes_with_shifts_per_pixel_does_not():
    x = x_batch()
    shared = T.make("o3_shared", S, 0, 0)
    per = T.make("o3_per_pixel", S, 0, 0)
    assert np.abs(shared.apply(shift(x, 1, 2)) - shift(shared.apply(x), 1, 2)).max() < 1e-12
    assert np.abs(per.apply(shift(x, 1, 2)) - shift(per.apply(x), 1, 2)).max() > 0.1


def test_perm_is_a_permutation():
    tau = T.make("perm_3d", S, 0, 0)
    m = tau.matrix(S, S)
    assert set(np.unique(m)) == {0.0, 1.0}
    assert (m.sum(0) == 1).all() and (m.sum(1) == 1).all()
    assert not np.array_equal(m, np.eye(len(m)))


def test_path_endpoints_and_so3():
    t0 = T.make("so3_path-t0", S, 0, 0)
    t1 = T.make("so3_path-t1", S, 0, 0)
    np.testing.assert_allclose(t0.pixel, np.broadcast_to(np.eye(3), (S, S, 3, 3)), atol=1e-14)
    a = T.skew_field(S, S, rng(0, T.PATH_ID, S))
    from scipy.linalg import expm

    np.testing.assert_allclose(t1.pixel, expm(-a), atol=1e-12)
    for t in (0.25, 0.5, 1.0):
        q = T.make(f"so3_path-t{t}", S, 0, 0).pixel
        np.testing.assert_allclose(np.linalg.det(q), 1.0, atol=1e-10)  # in SO(3)^d
        np.testing.assert_allclose(q @ np.swapaxes(q, -1, -2), np.broadcast_to(np.eye(3), q.shape), atol=1e-10)


def test_haar_sanity():
    """E[trace Q] = 0 and E[Q_11^2] = 1/n for Haar O(n); without the sign fix QR is biased."""
    gen = np.random.default_rng(1)
    q = T.haar_orthogonal(3, gen, (20000,))
    tr = np.trace(q, axis1=-2, axis2=-1)
    assert abs(tr.mean()) < 0.03
    assert abs((q[:, 0, 0] ** 2).mean() - 1 / 3) < 0.01
    # The unfixed QR factor has a positive-biased diagonal: the test can fail.
    qr_raw = np.linalg.qr(gen.standard_normal((20000, 3, 3)))[0]
    assert abs(np.trace(qr_raw, axis1=-2, axis2=-1).mean()) > 0.3


def test_path_is_shared_by_seeds_and_points():
    a, b = T.make("so3_path-t0.5", S, 0, 0), T.make("so3_path-t0.5", S, 0, 7)
    assert np.array_equal(a.pixel, b.pixel)
    half = T.make("so3_path-t0.5", S, 0, 0).pixel
    one = T.make("so3_path-t1", S, 0, 0).pixel
    np.testing.assert_allclose(half @ half, one, atol=1e-12)  # exp(-A/2)^2 = exp(-A): one direction


def test_element_depends_on_seed_and_transform_only():
    a, b = T.make("o_3d", S, 0, 3), T.make("o_3d", S, 0, 3)
    assert np.array_equal(a.dense, b.dense)
    assert not np.array_equal(a.dense, T.make("o_3d", S, 0, 4).dense)
    assert not np.array_equal(T.make("o3_shared", S, 0, 3).pixel, T.make("o3_shared", S, 1, 3).pixel)


@pytest.mark.parametrize("bad", ["rot90", "so3_path-t2", "so3_path-tx", ""])
def test_unknown_transform_is_one_clear_line(bad):
    with pytest.raises(ValueError, match="allowed: identity, o3_shared") as e:
        T.make(bad, S, 0, 0)
    assert "\n" not in str(e.value)
