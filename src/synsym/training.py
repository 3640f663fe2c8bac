"""SGD + momentum training of the finite networks (paper App. B), seeds vectorized.

NN: lr = eta0, lambda = 0.  NN+: lr = 8 eta0, lambda = 1e-7.  eta0 = 2 / lambda_max
in neural-tangents' normalization: ``predict.max_learning_rate(ntk)`` called,
as the paper did, on the logit-averaged (m x m) empirical NTK, whose default
``y_train_size`` is m. So eta0 = 2 (1 + momentum) m / lambda_max(Theta) with
Theta the empirical NTK at init on m training points (its top eigenvalue is
the same for the (mK x mK) kernel, whose logit blocks are independent), found
by power iteration on J J^T. With K = 10 this puts NN+ (8 eta0) just under
the edge of stability of the linearized dynamics, 2 (1 + momentum) m K /
lambda_max, matching the paper's remark that 8 eta0 is 2-4x below the
largest learning rate that trains. Using m K instead makes NN+ diverge.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from synsym import models
from synsym.architectures import N_CLASSES, ArchSpec
from synsym.seeding import rng

INFERENCE_SETTINGS = {"nn": (1.0, 0.0), "nn_plus": (8.0, 1e-7)}  # (lr factor, L2 lambda)


def resolve_device(device: str) -> torch.device:
    """cpu, cuda or auto; ``cuda`` without a GPU fails before any work."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda was requested but torch sees no CUDA GPU; use device: cpu or auto")
        return torch.device("cuda")
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {device!r}; allowed: cpu, cuda, auto")


def _f(spec: ArchSpec, depth: int, x: torch.Tensor) -> Callable:
    return lambda p: models.apply(spec, p, x, depth)


def estimate_lambda_max(
    spec: ArchSpec, params: dict[str, torch.Tensor], x: torch.Tensor, depth: int, iters: int = 30
) -> torch.Tensor:
    """Largest eigenvalue of each seed's empirical NTK J J^T on x (S, m, ...).

    Seeds do not interact, so the stacked Jacobian is block diagonal and one
    power iteration with per-seed normalization serves all seeds.
    """
    f = _f(spec, depth, x)
    s, m = x.shape[:2]
    gen = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn((s, m, N_CLASSES), generator=gen, dtype=x.dtype).to(x.device)
    v = v / v.flatten(1).norm(dim=1)[:, None, None]
    lam = torch.zeros(s, dtype=x.dtype, device=x.device)
    for _ in range(iters):
        _, vjp = torch.func.vjp(f, params)
        (jt_v,) = vjp(v)
        _, jjt_v = torch.func.jvp(f, (params,), (jt_v,))
        lam = (jjt_v * v).flatten(1).sum(dim=1)
        v = jjt_v / jjt_v.flatten(1).norm(dim=1)[:, None, None]
    return lam.detach()


def eta0_from_lambda(lam: torch.Tensor, m: int, momentum: float) -> torch.Tensor:
    """neural-tangents' max_learning_rate on an (m x m) NTK (y_train_size = m)."""
    return 2 * (1 + momentum) * m / lam


@dataclass
class TrainConfig:
    max_steps: int = 1000
    eval_every: int = 100
    batch_size: int = 40
    momentum: float = 0.9
    eta0_samples: int = 64
    accept_train_acc: float = 0.95
    eval_batch: int = 500
    stop_train_acc: float = 1.0  # a seed stops training at this training accuracy (paper: 100%)
    drop_stopped: bool = True  # repack the stack without stopped seeds (False: keep them, masked; for benchmarks)


def train_config(training: dict, inference: str) -> TrainConfig:
    """The TrainConfig of one cell from the config's training section."""
    from synsym.config import step_cap

    d = {k: v for k, v in training.items() if k != "max_steps_nn"}
    return TrainConfig(**{**d, "max_steps": step_cap(training, inference)})


def batch_indices(global_seed: int, seed: int, n: int, batch: int, steps: int) -> np.ndarray:
    """Batch order of one seed: epochs of permutations keyed by (seed, n_train)."""
    gen = rng(global_seed, seed, "batches", n)
    per_epoch = n // batch if n >= batch else 1
    epochs = -(-steps // per_epoch)
    idx = []
    for _ in range(epochs):
        perm = gen.permutation(n)
        if n < batch:
            perm = np.resize(perm, batch)
        idx.append(perm[: per_epoch * batch].reshape(per_epoch, batch))
    return np.concatenate(idx)[:steps]


def predict(spec: ArchSpec, params: dict, x: torch.Tensor, depth: int, chunk: int) -> torch.Tensor:
    """Logits (S, N, K) of per-seed images (S, N, ...), in chunks of N."""
    with torch.no_grad():
        return torch.cat([models.apply(spec, params, x[:, i : i + chunk], depth) for i in range(0, x.shape[1], chunk)], dim=1)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).double().mean(dim=-1)


def train(
    spec: ArchSpec,
    params: dict[str, torch.Tensor],
    data: dict[str, torch.Tensor],
    depth: int,
    lr: torch.Tensor,
    l2: float,
    batches: np.ndarray,
    cfg: TrainConfig,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train stacked seeds in place.

    ``data`` holds per-seed images x_train (S, N, H, W, 3) (each seed may see
    its own transform element), labels y_train (N,), and optionally
    x_val/y_val/x_test/y_test likewise, on the device; ``batches`` is
    (S, steps, B) indices into each seed's N images.
    A seed stops once an evaluation finds it fits its training set, or once its
    loss is not finite (recorded as ``diverged``, not a crash). A stopped seed is
    dropped from the stack at that evaluation, so it costs nothing afterwards:
    the seeds still training are repacked into smaller tensors.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    s, steps = batches.shape[:2]
    dev = data["x_train"].device
    y1h = torch.nn.functional.one_hot(data["y_train"], N_CLASSES).to(data["x_train"].dtype)
    diverged = torch.zeros(s, dtype=torch.bool)
    hist = {k: torch.full((s,), -1.0, dtype=torch.float64) for k in ("best_val", "test_at_best_val", "test_best", "train_best")}
    # -1 marks "never evaluated while finite"; reported as NaN.
    last = {"steps": torch.zeros(s, dtype=torch.long), "train_acc": torch.full((s,), float("nan"), dtype=torch.float64),
            "fit_step": torch.full((s,), -1, dtype=torch.long)}
    best_pred = None
    bidx_all = torch.as_tensor(batches, device=dev)
    lr = torch.as_tensor(lr).reshape(-1).expand(s)  # one rate per seed (a single one is shared)
    t0 = time.time()

    def pack(live: torch.Tensor) -> tuple:
        """The live seeds' parameters, velocities, images, batches and rates as their own stack."""
        ix = live.to(dev)
        work = {k: p[ix].clone().requires_grad_(True) for k, p in params.items()}
        w_vel = {k: v[ix].clone() for k, v in vel.items()}
        w_lr = {k: lr.to(dev)[ix].reshape(-1, *[1] * (v.dim() - 1)) for k, v in params.items()}
        return work, w_vel, w_lr, data["x_train"][ix], bidx_all[ix]

    def unpack(live: torch.Tensor, work: dict, w_vel: dict) -> None:
        ix = live.to(dev)
        with torch.no_grad():
            for k in params:
                params[k][ix] = work[k].detach()
                vel[k][ix] = w_vel[k]

    vel = {k: torch.zeros_like(v) for k, v in params.items()}
    live = torch.arange(s)
    work, w_vel, w_lr, x_live, b_live = pack(live)
    active = torch.ones(s, dtype=torch.bool, device=dev)  # within the live stack: not diverged since the last evaluation

    def evaluate(step: int) -> torch.Tensor:
        """Metrics of the live seeds; returns which of them go on training."""
        nonlocal best_pred
        ix = live.to(dev)
        ev = {}
        for split in ("train", "val", "test"):
            if f"x_{split}" in data:
                logits = predict(spec, work, data[f"x_{split}"][ix], depth, cfg.eval_batch)
                ev[split] = (logits, _acc(logits, data[f"y_{split}"]).cpu())
        tr = ev["train"][1]
        dv = diverged[live]
        hist["train_best"][live] = torch.maximum(hist["train_best"][live], tr)
        last["train_acc"][live] = tr
        newly = (tr >= cfg.accept_train_acc) & (last["fit_step"][live] < 0) & ~dv
        last["fit_step"][live[newly]] = step
        if "val" in ev:
            va, te = ev["val"][1], ev["test"][1]
            better = (va > hist["best_val"][live]) & ~dv
            hist["best_val"][live] = torch.where(better, va, hist["best_val"][live])
            hist["test_at_best_val"][live] = torch.where(better, te, hist["test_at_best_val"][live])
            hist["test_best"][live] = torch.maximum(hist["test_best"][live], torch.where(dv, -1.0, te))
            logits = ev["test"][0].detach().cpu()
            if best_pred is None:
                best_pred = torch.zeros((s, *logits.shape[1:]), dtype=logits.dtype)
            best_pred[live] = torch.where(better[:, None, None], logits, best_pred[live])
        el = time.time() - t0
        eta = el / max(step, 1) * (steps - step)
        fmt = lambda t: " ".join(f"{v:.3f}" for v in t.tolist())  # noqa: E731
        msg = f"step {step}/{steps} train_acc [{fmt(last['train_acc'])}]"
        if "val" in ev:
            msg += f" val [{fmt(ev['val'][1])}] test [{fmt(ev['test'][1])}]"
        go_on = (tr < cfg.stop_train_acc) & ~dv
        log(msg + f" active {int(go_on.sum())}/{s} elapsed {el:.0f}s eta {eta:.0f}s")
        return go_on

    for step in range(steps):
        xb = x_live[torch.arange(len(live), device=dev)[:, None], b_live[:, step]]
        yb = y1h[b_live[:, step]]
        out = models.apply(spec, work, xb, depth)
        per_seed = ((out - yb) ** 2).sum(dim=(1, 2)) / (2 * N_CLASSES * batches.shape[2])
        if l2:
            per_seed = per_seed + l2 / 2 * sum(p.pow(2).flatten(1).sum(1) for p in work.values())
        grads = torch.autograd.grad(per_seed.sum(), list(work.values()))
        bad = ~torch.isfinite(per_seed.detach())
        diverged[live] |= (bad & active).cpu()
        active &= ~bad
        with torch.no_grad():
            for (k, p), g in zip(work.items(), grads):
                mask = active.reshape(-1, *[1] * (p.dim() - 1))
                w_vel[k].mul_(cfg.momentum).add_(g)
                p.sub_(torch.where(mask, w_lr[k] * w_vel[k], torch.zeros_like(p)))
        last["steps"][live] += active.cpu().long()
        if (step + 1) % cfg.eval_every == 0 or step + 1 == steps:
            go_on = evaluate(step + 1)
            if not bool(go_on.any()):
                log(f"all seeds stopped at step {step + 1} (fit or diverged)")
                break
            if not cfg.drop_stopped:
                active &= go_on.to(dev)
            elif not bool(go_on.all()):  # drop the stopped seeds from the stack
                unpack(live, work, w_vel)
                live = live[go_on]
                work, w_vel, w_lr, x_live, b_live = pack(live)
                active = torch.ones(len(live), dtype=torch.bool, device=dev)
    unpack(live, work, w_vel)
    nan = lambda t: np.where(t.numpy() < 0, np.nan, t.numpy())  # noqa: E731
    return {
        "steps": last["steps"].numpy(),
        "train_acc": last["train_acc"].numpy(),
        "train_best": nan(hist["train_best"]),
        "val_acc": nan(hist["best_val"]),
        "test_acc": nan(hist["test_at_best_val"]),
        "test_acc_best": nan(hist["test_best"]),
        "fit_step": last["fit_step"].numpy(),
        "diverged": diverged.numpy(),
        "test_pred": None if best_pred is None else best_pred.numpy(),
    }
