"""The paper's SGD recipe per finite inference (App. B), torch-free so that the planner and the
DAG build can read it: NN trains at eta0 without L2; NN+ at 8 eta0 with lambda = 1e-7."""

from __future__ import annotations

INFERENCE_SETTINGS = {"nn": (1.0, 0.0), "nn_plus": (8.0, 1e-7)}  # (lr factor, L2 lambda)


def step_cap(training: dict, inference: str) -> int:
    """A cell's SGD step cap: NN may have its own, larger one (training.max_steps_nn), since at
    1/8 of NN+'s learning rate it needs more steps to fit (bench/convergence.py)."""
    nn_cap = training.get("max_steps_nn")
    return nn_cap if inference == "nn" and nn_cap else training["max_steps"]
