"""Which torch device a job runs on: the one rule every half of the study follows."""

from __future__ import annotations

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device: str):
    """cpu, cuda or auto as a ``torch.device``; ``cuda`` without a GPU fails before any work.

    torch is imported here, not at module level: the config and the DAG build read
    DEVICES without loading torch."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda was requested but torch sees no CUDA GPU; use device: cpu or auto")
        return torch.device("cuda")
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)}")


def kernel_device(device: str) -> str:
    """Where a kernel computes (the fast engine, the regressions, a reuse check): the config's ``device``
    resolved as the training jobs resolve it, as the string torch and the engine take ("cpu" or "cuda")."""
    return "cpu" if device == "cpu" else str(resolve_device(device))
