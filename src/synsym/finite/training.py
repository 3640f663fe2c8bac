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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from synsym.core.architectures import N_CLASSES, ArchSpec
from synsym.core.checkpoint import Checkpoint
from synsym.core.faults import kill_point
from synsym.core.seeding import rng
from synsym.finite import models
from synsym.finite.recipe import step_cap


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
    """neural-tangents' max_learning_rate on an (m x m) NTK (y_train_size = m). ``momentum`` is
    what that call is given: the SGD momentum (training.eta0_momentum: true) or 0 (false, the
    momentum-free reading); the paper does not say which (bench/max_lr.py measures both)."""
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
    checkpoint_minutes: float = 30.0  # wall time between checkpoints (0: after every step; tests)
    eta0_momentum: bool = True  # eta0 = 2 (1 + momentum) m / lambda_max; False: 2 m / lambda_max
    # GPU speed switches (models.Speed and below); each is the same function, see tests/test_speed.py
    tf32: bool | None = None  # float32 matmuls and convs in TF32 (True), IEEE (False), torch's defaults (None)
    conv: str = "grouped"  # stacked seeds' convs: grouped | per_seed
    channels_last: bool = False
    compile: bool = False  # torch.compile the forward pass of the training step (launch-bound small nets)

    @property
    def eta0_mu(self) -> float:
        """The momentum eta0's formula is given (see eta0_from_lambda)."""
        return self.momentum if self.eta0_momentum else 0.0


def train_config(training: dict, inference: str) -> TrainConfig:
    """The TrainConfig of one cell from the config's training section."""
    d = {k: v for k, v in training.items() if k != "max_steps_nn"}
    return TrainConfig(**{**d, "max_steps": step_cap(training, inference)})


@contextmanager
def float32_precision(tf32: bool | None) -> Iterator[None]:
    """float32 matmuls and convolutions in TF32 (True: what JAX, the paper's library, does on GPUs by
    default) or full IEEE float32 (False); None leaves torch's defaults (TF32 convs, IEEE matmuls).
    float64 is never affected, so the theorem tests are not either."""
    if tf32 is None:
        yield
        return
    mm, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    old = (mm.fp32_precision, conv.fp32_precision)
    mm.fp32_precision = conv.fp32_precision = "tf32" if tf32 else "ieee"
    try:
        yield
    finally:
        mm.fp32_precision, conv.fp32_precision = old


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


@dataclass
class Setup:
    """Everything a finite run fixes before its first step (``setup``)."""

    params: dict
    lambda_max: torch.Tensor  # per seed
    eta0: torch.Tensor  # per seed
    lr: torch.Tensor  # per seed: the inference's factor x eta0
    l2: float
    batches: np.ndarray  # (S, steps, B) indices into each seed's N images


def setup(spec: ArchSpec, width: int, depth: int, x_train: torch.Tensor, seeds: list[int], inference: str,
          cfg: TrainConfig, global_seed: int = 0, first_layer: str = "gaussian") -> Setup:
    """The study's recipe, in its one order: stacked init, lambda_max of the empirical NTK on the first
    eta0_samples images, eta0, the inference's factor and L2 (recipe.INFERENCE_SETTINGS), keyed batch orders.
    ``x_train`` is (S, N, H, W, 3); params take its dtype and device."""
    from synsym.finite.recipe import INFERENCE_SETTINGS

    n = x_train.shape[1]
    params = models.init_params(spec, width, depth, x_train.shape[2], seeds, global_seed, x_train.dtype,
                                x_train.device, first_layer)
    k = min(cfg.eta0_samples, n)
    lam = estimate_lambda_max(spec, params, x_train[:, :k], depth)
    eta0 = eta0_from_lambda(lam, k, cfg.eta0_mu)
    factor, l2 = INFERENCE_SETTINGS[inference]
    batches = np.stack([batch_indices(global_seed, s, n, cfg.batch_size, cfg.max_steps) for s in seeds])
    return Setup(params, lam, eta0, factor * eta0, l2, batches)


def predict(spec: ArchSpec, params: dict, x: torch.Tensor, depth: int, chunk: int) -> torch.Tensor:
    """Logits (S, N, K) of per-seed images (S, N, ...), in chunks of N."""
    with torch.no_grad():
        return torch.cat([models.apply(spec, params, x[:, i : i + chunk], depth) for i in range(0, x.shape[1], chunk)], dim=1)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).double().mean(dim=-1)


@dataclass
class Stack:
    """The seeds still training, packed into tensors of their own.

    A seed that stops (fits, or diverges) leaves the stack at the next evaluation
    and the rest are repacked (``Stack.pack`` of the survivors), so a stopped seed
    costs nothing afterwards. The full per-seed parameters and momenta stay with the
    caller; ``unpack`` writes the stack's back into them.
    """

    live: torch.Tensor  # (S_live,) indices of these seeds among all seeds, on the CPU
    params: dict[str, torch.Tensor]  # leaf tensors that require grad
    vel: dict[str, torch.Tensor]  # momentum buffers
    lr: dict[str, torch.Tensor]  # each seed's learning rate, shaped to broadcast against a parameter
    x_train: torch.Tensor  # (S_live, N, ...) each seed's training images
    batches: torch.Tensor  # (S_live, steps, B) each seed's batch order
    active: torch.Tensor  # (S_live,) on the device: not diverged since the last evaluation

    @classmethod
    def pack(cls, live: torch.Tensor, params: dict, vel: dict, lr: torch.Tensor, x_train: torch.Tensor,
             batches: torch.Tensor) -> Stack:
        dev = x_train.device
        ix = live.to(dev)
        return cls(
            live=live,
            params={k: p[ix].clone().requires_grad_(True) for k, p in params.items()},
            vel={k: v[ix].clone() for k, v in vel.items()},
            lr={k: lr.to(dev)[ix].reshape(-1, *[1] * (v.dim() - 1)) for k, v in params.items()},
            x_train=x_train[ix],
            batches=batches[ix],
            active=torch.ones(len(live), dtype=torch.bool, device=dev),
        )

    def unpack(self, params: dict, vel: dict) -> None:
        ix = self.live.to(self.x_train.device)
        with torch.no_grad():
            for k in params:
                params[k][ix] = self.params[k].detach()
                vel[k][ix] = self.vel[k]

    def sgd_step(self, spec: ArchSpec, depth: int, y1h: torch.Tensor, step: int, momentum: float, l2: float,
                 forward: Callable = models.apply) -> torch.Tensor:
        """One SGD + momentum step of every seed on its own batch (MSE on one-hot labels, plus
        L2). A seed whose loss is not finite stops moving; returns which seeds just diverged.
        ``forward`` is models.apply or its torch.compile'd twin."""
        b = self.batches[:, step]
        xb = self.x_train[torch.arange(len(self.live), device=b.device)[:, None], b]
        out = forward(spec, self.params, xb, depth)
        per_seed = ((out - y1h[b]) ** 2).sum(dim=(1, 2)) / (2 * N_CLASSES * b.shape[1])
        if l2:
            per_seed = per_seed + l2 / 2 * sum(p.pow(2).flatten(1).sum(1) for p in self.params.values())
        grads = torch.autograd.grad(per_seed.sum(), list(self.params.values()))
        bad = ~torch.isfinite(per_seed.detach())
        newly = bad & self.active
        self.active &= ~bad
        with torch.no_grad():
            for (k, p), g in zip(self.params.items(), grads):
                mask = self.active.reshape(-1, *[1] * (p.dim() - 1))
                self.vel[k].mul_(momentum).add_(g)
                p.sub_(torch.where(mask, self.lr[k] * self.vel[k], torch.zeros_like(p)))
        return newly


def evaluate(spec: ArchSpec, params: dict, data: dict, live: torch.Tensor, depth: int, chunk: int) -> dict:
    """{split: (logits, accuracy per seed on the CPU)} of the stacked seeds ``live`` on every split in ``data``."""
    ix = live.to(data["x_train"].device)
    ev = {}
    for split in ("train", "val", "test"):
        if f"x_{split}" in data:
            logits = predict(spec, params, data[f"x_{split}"][ix], depth, chunk)
            ev[split] = (logits, _acc(logits, data[f"y_{split}"]).cpu())
    return ev


class Tracker:
    """Every seed's record across evaluations: steps taken, divergence, the last and best training
    accuracy, the first evaluated step at the acceptance accuracy, the best validation accuracy with
    the test accuracy and predictions at it, and the best test accuracy. -1 marks "never evaluated
    while finite" and is reported as NaN."""

    def __init__(self, s: int):
        self.steps = torch.zeros(s, dtype=torch.long)
        self.diverged = torch.zeros(s, dtype=torch.bool)
        self.train_acc = torch.full((s,), float("nan"), dtype=torch.float64)
        self.fit_step = torch.full((s,), -1, dtype=torch.long)
        self.best = {k: torch.full((s,), -1.0, dtype=torch.float64) for k in ("train", "val", "test_at_val", "test")}
        self.best_pred: torch.Tensor | None = None

    def update(self, step: int, live: torch.Tensor, ev: dict, cfg: TrainConfig) -> torch.Tensor:
        """Record one evaluation of the seeds ``live``; returns which of them go on training."""
        tr, dv, b = ev["train"][1], self.diverged[live], self.best
        b["train"][live] = torch.maximum(b["train"][live], tr)
        self.train_acc[live] = tr
        newly = (tr >= cfg.accept_train_acc) & (self.fit_step[live] < 0) & ~dv
        self.fit_step[live[newly]] = step
        if "val" in ev:
            va, te = ev["val"][1], ev["test"][1]
            better = (va > b["val"][live]) & ~dv
            b["val"][live] = torch.where(better, va, b["val"][live])
            b["test_at_val"][live] = torch.where(better, te, b["test_at_val"][live])
            b["test"][live] = torch.maximum(b["test"][live], torch.where(dv, -1.0, te))
            logits = ev["test"][0].detach().cpu()
            if self.best_pred is None:
                self.best_pred = torch.zeros((len(self.steps), *logits.shape[1:]), dtype=logits.dtype)
            self.best_pred[live] = torch.where(better[:, None, None], logits, self.best_pred[live])
        return (tr < cfg.stop_train_acc) & ~dv

    def state(self) -> dict:
        return {"steps": self.steps, "diverged": self.diverged, "train_acc": self.train_acc, "fit_step": self.fit_step,
                "best": self.best, "best_pred": self.best_pred}

    def restore(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def result(self) -> dict:
        nan = lambda t: np.where(t.numpy() < 0, np.nan, t.numpy())  # noqa: E731
        return {
            "steps": self.steps.numpy(),
            "train_acc": self.train_acc.numpy(),
            "train_best": nan(self.best["train"]),
            "val_acc": nan(self.best["val"]),
            "test_acc": nan(self.best["test_at_val"]),
            "test_acc_best": nan(self.best["test"]),
            "fit_step": self.fit_step.numpy(),
            "diverged": self.diverged.numpy(),
            "test_pred": None if self.best_pred is None else self.best_pred.numpy(),
        }


def _snapshot(stack: Stack, params: dict, vel: dict, tracker: Tracker) -> dict:
    """What a checkpoint (core.checkpoint) holds of a run: the live seeds' parameters and velocities, on the CPU."""
    stack.unpack(params, vel)
    return {"live": stack.live, "active": stack.active.cpu(), "params": {k: v.cpu() for k, v in params.items()},
            "vel": {k: v.cpu() for k, v in vel.items()}, "tracker": tracker.state()}


def _progress(step: int, steps: int, t0: float, tracker: Tracker, ev: dict, go_on: torch.Tensor) -> str:
    el = time.time() - t0
    eta = el / max(step, 1) * (steps - step)
    fmt = lambda t: " ".join(f"{v:.3f}" for v in t.tolist())  # noqa: E731
    msg = f"step {step}/{steps} train_acc [{fmt(tracker.train_acc)}]"
    if "val" in ev:
        msg += f" val [{fmt(ev['val'][1])}] test [{fmt(ev['test'][1])}]"
    return msg + f" active {int(go_on.sum())}/{len(tracker.steps)} elapsed {el:.0f}s eta {eta:.0f}s"


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
    checkpoint: Checkpoint | None = None,
) -> dict:
    """Train stacked seeds in place.

    ``data`` holds per-seed images x_train (S, N, H, W, 3) (each seed may see
    its own transform element), labels y_train (N,), and optionally
    x_val/y_val/x_test/y_test likewise, on the device; ``batches`` is
    (S, steps, B) indices into each seed's N images; ``lr`` is one rate, or one per seed.
    A seed stops once an evaluation finds it fits its training set, or once its
    loss is not finite (recorded as ``diverged``, not a crash). With
    ``cfg.drop_stopped`` a stopped seed leaves the :class:`Stack`; otherwise it stays, masked.
    With a :class:`Checkpoint`, the run resumes from its snapshot and writes new ones as it goes.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    s, steps = batches.shape[:2]
    x_train = data["x_train"]
    y1h = torch.nn.functional.one_hot(data["y_train"], N_CLASSES).to(x_train.dtype)
    lr = torch.as_tensor(lr).reshape(-1).expand(s)
    order = torch.as_tensor(batches, device=x_train.device)
    vel = {k: torch.zeros_like(v) for k, v in params.items()}
    stack = Stack.pack(torch.arange(s), params, vel, lr, x_train, order)
    tracker, t0, start = Tracker(s), time.time(), 0
    state = checkpoint.load() if checkpoint else None
    if state:
        start = state["step"]
        with torch.no_grad():
            for k in params:
                params[k].copy_(state["params"][k])
                vel[k].copy_(state["vel"][k])
        tracker.restore(state["tracker"])
        stack = Stack.pack(state["live"], params, vel, lr, x_train, order)
        stack.active = state["active"].to(stack.active.device)
        log(f"resumed from {checkpoint.path} at step {start}/{steps}")
    forward = torch.compile(models.apply, dynamic=False) if cfg.compile else models.apply
    with models.speed(conv=cfg.conv, channels_last=cfg.channels_last), float32_precision(cfg.tf32):
        for step in range(start, steps):
            tracker.diverged[stack.live] |= stack.sgd_step(spec, depth, y1h, step, cfg.momentum, l2, forward).cpu()
            tracker.steps[stack.live] += stack.active.cpu().long()
            if (step + 1) % cfg.eval_every == 0 or step + 1 == steps:
                ev = evaluate(spec, stack.params, data, stack.live, depth, cfg.eval_batch)
                go_on = tracker.update(step + 1, stack.live, ev, cfg)
                log(_progress(step + 1, steps, t0, tracker, ev, go_on))
                if not bool(go_on.any()):
                    log(f"all seeds stopped at step {step + 1} (fit or diverged)")
                    break
                if not cfg.drop_stopped:
                    stack.active &= go_on.to(stack.active.device)
                elif not bool(go_on.all()):
                    stack.unpack(params, vel)
                    stack = Stack.pack(stack.live[go_on], params, vel, lr, x_train, order)
            kill_point("step", step + 1)  # test hook (core.faults): die between checkpoints, work to replay
            if checkpoint and checkpoint.due():
                checkpoint.save(step + 1, _snapshot(stack, params, vel, tracker))
    stack.unpack(params, vel)
    return tracker.result()
