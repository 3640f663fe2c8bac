"""Slurm requests: what each job asks the cluster for, attempt by attempt.

A request is the cost model's prediction (pipeline.cost) times ``plan.safety_factor``, at least the floors,
scaled by ``plan.retry_scale`` per retry; every attempt of a resumable (checkpointing) job fits
``plan.max_job_hours`` and ``plan.max_job_mem_gb``. The rules' ``resources`` call ``resources`` here.
"""

from __future__ import annotations

import math
from pathlib import Path

from synsym.pipeline.calibration import PlanError, default_path, load
from synsym.pipeline.cost import predict
from synsym.pipeline.jobs import Job

RESUMABLE = ("train_cell",)


def request(seconds: float, mb: float, config: dict, attempt: int = 1, rule: str | None = None) -> tuple[int, int]:
    """Slurm (runtime minutes, mem_mb) for a predicted job: safety factor, floors, growth per retry;
    a resumable rule's attempt is capped at plan.max_job_hours, and its memory grows with retries
    only up to plan.max_job_mem_gb (it may need a hundred attempts that each end at the time limit,
    not for want of memory)."""
    p = config["plan"]
    grow = p["retry_scale"] ** (attempt - 1)
    runtime = math.ceil(max(p["min_runtime_min"], math.ceil(seconds * p["safety_factor"] / 60)) * grow)
    mem = max(p["min_mem_mb"], math.ceil(mb * p["safety_factor"]))
    return _capped(rule, runtime, mem, grow, config)


def _capped(rule: str | None, runtime: int, mem: int, grow: float, config: dict) -> tuple[int, int]:
    """An attempt's request from its runtime (grown already) and first-attempt memory: memory grows by
    ``grow``; a resumable rule's attempt stays within plan.max_job_hours, and its memory grows only up to
    plan.max_job_mem_gb (never below the first attempt's)."""
    p = config["plan"]
    if rule in RESUMABLE:
        runtime = min(runtime, math.ceil(60 * p["max_job_hours"]))
        return runtime, min(math.ceil(mem * grow), max(mem, math.ceil(1024 * p["max_job_mem_gb"])))
    return runtime, math.ceil(mem * grow)


def attempts(row: dict, config: dict) -> int:
    """Attempts of at most plan.max_job_hours a resumable job needs at its predicted time."""
    return max(1, math.ceil(row["pred_s"] / (3600 * config["plan"]["max_job_hours"])))


# ---------------------------------------------------------------- the workflow's view


_CACHE: dict = {}


def workflow_calibration(config: dict) -> dict | None:
    """The calibration the rules' resources use: ``plan.calibration`` (a path), or this
    machine's file for the config's device if it exists; None: no plan, fixed requests."""
    p = config["plan"]["calibration"]
    device = "cuda" if config["device"] == "cuda" else "cpu"
    path = Path(p) if p else default_path(device)
    key = str(path.resolve())
    if key not in _CACHE:
        if not path.exists():
            if p:
                raise PlanError(f"plan.calibration = {p!r} does not exist; allowed: a file written by "
                                "`python -m synsym.cli plan --calibrate`")
            _CACHE[key] = None
        else:
            _CACHE[key] = load(path)
    return _CACHE[key]


def resources(rule: str, wildcards, config: dict, attempt: int, fallback: tuple[int, int]) -> tuple[int, int]:
    """(runtime minutes, mem_mb) of one job for Slurm: planned when a calibration covers it,
    else ``fallback`` (both grow by plan.retry_scale per retry); a resumable job's attempt asks for at most
    plan.max_job_hours either way."""
    cal = workflow_calibration(config)
    w = dict(wildcards.items()) if hasattr(wildcards, "items") else dict(wildcards)
    if cal is not None:
        try:
            return request(*predict(Job(rule, w), config, cal), config, attempt, rule)
        except KeyError:
            pass  # this calibration lacks the job's (architecture, width, ...): fixed request
    grow = config["plan"]["retry_scale"] ** (attempt - 1)
    return _capped(rule, math.ceil(fallback[0] * grow), fallback[1], grow, config)  # the same caps as request()


