"""Every random choice derives from (global seed, a tuple of ids).

A cell's randomness is keyed by names (``"init", seed, "vec", 128``) rather
than by the order jobs run in, so any cell reproduces alone, bit for bit.
"""

from __future__ import annotations

import hashlib

import numpy as np


def seed_int(*parts: object) -> int:
    """A 64-bit integer that depends only on ``parts`` (stable across runs and machines)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def rng(*parts: object) -> np.random.Generator:
    """A numpy generator keyed by ``parts``."""
    return np.random.default_rng(seed_int(*parts))
