"""The symmetry transforms of the data (paper Sec. 4, App. B.3 and E).

Images are float arrays of shape (N, H, W, 3); "flattened" always means HWC
order. Each transform is one fixed element tau of a group, drawn from
(global seed, run seed, transform id) so that a cell's data reproduces alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import expm

from synsym.core.seeding import rng

# id -> (group in the paper's notation, what the element is)
TRANSFORMS: dict[str, tuple[str, str]] = {
    "identity": ("I_3d", "identity"),
    "o3_shared": ("O(3)⊗I_d", "one Haar 3x3 orthogonal matrix on every pixel"),
    "o3_per_pixel": ("O(3)^d", "an independent Haar 3x3 orthogonal matrix per pixel"),
    "perm_3d": ("P(3d)", "a uniform permutation of the flattened 3d coordinates"),
    "o_3d": ("O(3d)", "a Haar orthogonal matrix on the flattened 3d vector"),
}
# The continuous path of App. E; its parameter t is part of the cell id.
PATH_ID = "so3_path"
# Paper ordering of groups from smallest to most spurious (Fig. 2 x-axis).
ORDER = ("identity", "o3_shared", "o3_per_pixel", "perm_3d", "o_3d")
# Which group contains which (for Theorem 4.1 predictions).
SUBGROUPS: dict[str, set[str]] = {
    "identity": {"identity"},
    "o3_shared": {"identity", "o3_shared"},
    "o3_per_pixel": {"identity", "o3_shared", "o3_per_pixel"},
    "o_3d": {"identity", "o3_shared", "o3_per_pixel", "perm_3d", "o_3d"},
}


def check_transform(transform_id: str) -> str:
    """Accept a grid id or ``so3_path-t<t>``; fail with one line otherwise."""
    if transform_id in TRANSFORMS:
        return transform_id
    if transform_id.startswith(PATH_ID + "-t"):
        try:
            t = float(transform_id[len(PATH_ID) + 2 :])
        except ValueError:
            t = -1.0
        if 0.0 <= t <= 1.0:
            return transform_id
    raise ValueError(
        f"unknown transform {transform_id!r}; allowed: {', '.join(TRANSFORMS)}, "
        f"or {PATH_ID}-t<t> with 0 <= t <= 1"
    )


def haar_orthogonal(n: int, gen: np.random.Generator, size: tuple[int, ...] = ()) -> np.ndarray:
    """Haar-distributed orthogonal matrices: QR of a Gaussian with the sign fix.

    Without multiplying by sign(diag R) the QR factor is not Haar (Mezzadri 2007).
    """
    z = gen.standard_normal(size + (n, n))
    q, r = np.linalg.qr(z)
    d = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    d[d == 0] = 1.0
    return q * d[..., None, :]


def skew_field(h: int, w: int, gen: np.random.Generator) -> np.ndarray:
    """d independent random 3x3 skew-symmetric matrices (App. E)."""
    b = gen.standard_normal((h, w, 3, 3))
    return b - np.swapaxes(b, -1, -2)


@dataclass
class Transform:
    """One fixed group element acting on (N, H, W, 3) images.

    Exactly one of ``pixel`` (H, W, 3, 3: x_a -> pixel[a] @ x_a), ``perm``
    (flattened x -> x[perm]) or ``dense`` (flattened x -> dense @ x) is set;
    identity has none.
    """

    id: str
    pixel: np.ndarray | None = None
    perm: np.ndarray | None = None
    dense: np.ndarray | None = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        n, h, w, c = x.shape
        if self.pixel is not None:
            return np.einsum("hwij,nhwj->nhwi", self.pixel, x)
        flat = x.reshape(n, h * w * c)
        if self.perm is not None:
            return flat[:, self.perm].reshape(x.shape)
        if self.dense is not None:
            return (flat @ self.dense.T).reshape(x.shape)
        return x.copy()

    def matrix(self, h: int, w: int, c: int = 3) -> np.ndarray:
        """The element as a (3d, 3d) matrix M on flattened images: tau x = M x."""
        eye = np.eye(h * w * c).reshape(h * w * c, h, w, c)
        return self.apply(eye).reshape(h * w * c, h * w * c).T


def path_id(t: float) -> str:
    """The transform id of the point t of the SO(3)^d path, e.g. so3_path-t0.5."""
    return f"{PATH_ID}-t{t:g}"


def make(transform_id: str, image_size: int, global_seed: int, seed: int) -> Transform:
    """Draw the element of ``transform_id`` for (global seed, run seed)."""
    check_transform(transform_id)
    s = image_size
    d3 = 3 * s * s
    if transform_id.startswith(PATH_ID):
        t = float(transform_id[len(PATH_ID) + 2 :])
        # A is keyed by neither t nor the run seed: every point of the path and
        # every init of an ensemble see one direction, so ensemble means and
        # S-Dist compare learners on the same data tau_t D (App. E).
        a = skew_field(s, s, rng(global_seed, PATH_ID, s))
        return Transform(transform_id, pixel=expm(-t * a))
    gen = rng(global_seed, seed, transform_id, s)
    if transform_id == "identity":
        return Transform(transform_id)
    if transform_id == "o3_shared":
        q = haar_orthogonal(3, gen)
        return Transform(transform_id, pixel=np.broadcast_to(q, (s, s, 3, 3)).copy())
    if transform_id == "o3_per_pixel":
        return Transform(transform_id, pixel=haar_orthogonal(3, gen, (s, s)))
    if transform_id == "perm_3d":
        return Transform(transform_id, perm=gen.permutation(d3))
    return Transform(transform_id, dense=haar_orthogonal(d3, gen))
