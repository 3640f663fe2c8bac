"""Step budgets from measurement: how many SGD steps a training job will take before its seeds stop.

Finite nets stop at 100% training accuracy, long before the paper's 1e6-step cap at small sizes.
``bench/convergence.py`` measures, per architecture and inference, the step at which each seed
reaches 95% (``fit_step``, the paper's acceptance) and stops at 100% (``stop_step``, what a job
runs) at several training-set sizes into results/bench/; the rows the planner uses are a reviewed copy
shipped as this package's data (convergence.csv). Here a power law
steps = a n^alpha is fitted per (architecture, inference) to the slowest seed at each size (a job
runs until its last seed stops), and the planner prices a job at that prediction, capped at the
job's step cap. Sizes where a seed never stopped are left out of the fit (they only bound it).
Numpy and the standard library only: the DAG build imports this.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from synsym.core.metrics import power_law_fit

CSV = Path(str(resources.files("synsym.pipeline").joinpath("convergence.csv")))  # package data
COLUMNS = ("stop_step", "fit_step")  # 100% (a job's stop) and 95% (acceptance)


@dataclass(frozen=True)
class StepFit:
    """steps = a n^alpha fitted on ``sizes``; ``spread`` is the median over sizes of slowest / fastest
    seed; ``censored`` are sizes with a seed that never stopped within its cap."""

    arch: str
    inference: str
    column: str
    a: float
    alpha: float
    alpha_se: float
    sizes: tuple[int, ...]
    seeds: int
    spread: float
    censored: tuple[int, ...]
    width: int
    image_size: int

    def predict(self, n: int) -> float:
        return self.a * n**self.alpha


def read_rows(path: str | Path = CSV) -> list[dict]:
    """The bench's rows (an empty list when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _group(rows: list[dict]) -> list[dict]:
    """The rows of the (width, depth, image size) that has the most sizes (the bench's baseline)."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["width"], r["depth"], r["image_size"]), []).append(r)
    return max(by.values(), key=lambda g: (len({r["n_train"] for r in g}), max(int(r["n_train"]) for r in g)))


def fit(rows: list[dict], arch: str, inference: str, column: str = "stop_step") -> StepFit | None:
    """The power law of one (architecture, inference), or None with fewer than 2 uncensored sizes."""
    mine = [r for r in rows if r["arch"] == arch and r["inference"] == inference and r["depth"] == "8"]
    if not mine:
        return None
    mine = _group(mine)
    sizes, slowest, spreads, censored, seeds = [], [], [], [], 0
    for n in sorted({int(r["n_train"]) for r in mine}):
        # a rerun with a larger cap replaces the earlier rows of that size
        at = [r for r in mine if int(r["n_train"]) == n]
        cap = max(int(r["max_steps"]) for r in at)
        at = [r for r in at if int(r["max_steps"]) == cap]
        steps = [float(r[column]) for r in at if r[column] not in ("", None)]
        if len(steps) < len(at) or not steps:
            censored.append(n)
            continue
        sizes.append(n)
        slowest.append(max(steps))
        spreads.append(max(steps) / max(1.0, min(steps)))
        seeds = max(seeds, len(at))
    if len(sizes) < 2:
        return None
    # the study's log-log fit (core.metrics.power_law_fit: y ~ c m^-alpha), here for growing steps
    decay, se = power_law_fit(np.asarray(sizes), np.asarray(slowest))
    alpha = -decay
    log_a = float(np.mean(np.log(slowest)) - alpha * np.mean(np.log(sizes)))  # the least-squares intercept
    return StepFit(arch, inference, column, math.exp(log_a), float(alpha), se, tuple(sizes), seeds,
                   float(np.median(spreads)), tuple(censored), int(mine[0]["width"]), int(mine[0]["image_size"]))


_FITS: dict[tuple, StepFit | None] = {}


def predicted_steps(arch: str, inference: str, n: int, cap: int, path: str | Path | None = None
                    ) -> tuple[int, StepFit | None]:
    """(steps a job of n training images is priced at, the fit): the slowest seed's predicted steps to
    stop, at most ``cap``; the cap itself when nothing was measured for (arch, inference). ``path``:
    the bench's rows (default: the committed CSV)."""
    path = CSV if path is None else path
    key = (str(path), arch, inference)
    if key not in _FITS:
        _FITS[key] = fit(read_rows(path), arch, inference)
    f = _FITS[key]
    return (cap if f is None else max(1, min(cap, math.ceil(f.predict(n))))), f
