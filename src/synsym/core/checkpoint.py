"""Snapshots of a training job, one mechanism for the finite nets and the ImageNet models: written atomically at
most every ``minutes`` of wall time (0: whenever asked), keyed by the job's settings, so a job killed at a time
limit resumes where it stopped and ends bit for bit as an uninterrupted run, and a snapshot written for another
cell or config is never resumed."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from synsym.core.faults import kill_point
from synsym.core.io import atomic_path


class Checkpoint:
    def __init__(self, path: str | Path, key: str, minutes: float):
        self.path, self.key, self.minutes, self.last = Path(path), key, minutes, time.time()

    def due(self) -> bool:
        return time.time() - self.last >= 60 * self.minutes

    def save(self, step: int, state: dict) -> None:
        """Write ``state`` (tensors on any device; loaded where the caller maps them) after step ``step``."""
        with atomic_path(self.path) as tmp:
            torch.save({"key": self.key, "step": step, **state}, tmp)
        self.last = time.time()
        kill_point("checkpoint", step)  # test hook (core.faults): die like a job at its time limit

    def load(self, map_location=None) -> dict | None:
        """The snapshot, or None when there is none or it was written for another key (``stale`` says which)."""
        self.stale = False
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location=map_location, weights_only=False)
        self.stale = state.get("key") != self.key
        return None if self.stale else state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
