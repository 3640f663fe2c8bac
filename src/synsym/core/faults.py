"""The one test hook that kills a training job the way a cluster does (SIGKILL, no cleanup), so the fault tests
(docs/faults.md) can show that a killed job resumes bit for bit.

``SYNSYM_KILL=checkpoint:N``: die right after the first checkpoint written at step N or later (a job at its time
limit). ``SYNSYM_KILL=step:N``: die after step N, between checkpoints, so the work since the last one is replayed.
The finite training loop and the ImageNet loop both call :func:`kill_point`; unset, it does nothing.
"""

from __future__ import annotations

import os
import signal

ENV = "SYNSYM_KILL"
POINTS = ("checkpoint", "step")


def _target() -> tuple[str, int] | None:
    value = os.environ.get(ENV)
    if not value:
        return None
    point, _, n = value.partition(":")
    if point not in POINTS or not n.isdigit():
        raise ValueError(f"{ENV}={value!r} is invalid; allowed: checkpoint:N or step:N")
    return point, int(n)


def kill_point(point: str, step: int) -> None:
    """SIGKILL this process if ``SYNSYM_KILL`` names this ``point`` (``checkpoint`` or ``step``) at ``step``:
    at or after N for a checkpoint, exactly N for a step."""
    target = _target()
    if target is None or target[0] != point:
        return
    if (step >= target[1]) if point == "checkpoint" else (step == target[1]):
        os.kill(os.getpid(), signal.SIGKILL)
