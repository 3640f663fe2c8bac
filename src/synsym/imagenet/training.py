"""Training one ImageNet cell with the FLAX ImageNet example's recipe (App. B.2), under
torch DistributedDataParallel when started by ``torchrun`` and in one process otherwise:
the same code, the same function of (global seed, cell), whatever the process count.

Recipe (FLAX examples/imagenet): SGD, Nesterov momentum 0.9, learning rate
0.1 x global batch / 256 with a linear warm-up over 5 epochs and a cosine decay to 0,
weight decay 1e-4 on kernels only (not on biases or norm scales), plain cross-entropy
(that example sets no label smoothing), batch norm with statistics over the global batch,
150 epochs (the paper's change, App. B.2); bf16 autocast on GPU.

Every epoch ends with an atomic checkpoint, so a killed or preempted job restarted by
Snakemake resumes where it stopped and ends with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torch.nn.functional as F

from synsym.core import jobspec
from synsym.core.checkpoint import Checkpoint
from synsym.core.device import resolve_device
from synsym.core.faults import kill_point
from synsym.core.io import atomic_path, code_version
from synsym.core.seeding import rng, seed_int
from synsym.imagenet import data as I
from synsym.imagenet import models as V
from synsym.imagenet.cells import image_size
from synsym.imagenet.registry import check_transform, get
from synsym.imagenet.tables import SCHEMA


def _dist() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(requested: str, local_rank: int) -> torch.device:
    """synsym.core.device's rule (cpu, cuda, auto; cuda without a GPU fails in one line),
    then this process's own GPU under torchrun."""
    device = resolve_device(requested)
    if device.type != "cuda":
        return device
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def learning_rate(step: int, steps_per_epoch: int, cfg: dict) -> float:
    """Linear warm-up then cosine decay, per step, as the FLAX example's create_learning_rate_fn."""
    base = cfg["learning_rate"] * cfg["batch_size"] / 256
    epoch = step / steps_per_epoch
    warm = min(1.0, epoch / cfg["warmup_epochs"]) if cfg["warmup_epochs"] > 0 else 1.0
    span = cfg["epochs"] - cfg["warmup_epochs"]
    ratio = max(0.0, epoch - cfg["warmup_epochs"]) / span if span > 0 else 0.0
    return base * warm * 0.5 * (1 + math.cos(math.pi * ratio))


def _sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t)
    return t


def batch_on(batch, size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a DataLoader batch on the device: decoded there (nvjpeg on a GPU) when the
    dataset yields raw JPEG bytes (I.collate_raw's 4 fields), else moved as the workers made them."""
    if len(batch) == 4:
        datas, boxes, flips, y = batch
        return I.decode_batch(datas, boxes, flips, size, device), y.to(device, non_blocking=True)
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def evaluate(net, loader, tau, device, world: int, size: int) -> tuple[float, float, float]:
    """(loss, top-1, top-5) over the whole split; each rank evaluates its own slice."""
    net.eval()
    acc = torch.zeros(4, dtype=torch.float64, device=device)
    with torch.no_grad():
        for batch in loader:
            x, y = batch_on(batch, size, device)
            x = tau(x)
            logits = net(x).float()
            top5 = logits.topk(min(5, logits.shape[1]), 1).indices
            acc += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                                (top5[:, 0] == y).sum().double(), (top5 == y[:, None]).any(1).sum().double(),
                                torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
    acc = _sum(acc, world)
    net.train()
    return (acc[0] / acc[3]).item(), (acc[1] / acc[3]).item(), (acc[2] / acc[3]).item()


@dataclass
class Cell:
    """One ImageNet cell set up for training: its data, net, optimizer and loaders (``setup``)."""

    spec: Mapping
    cfg: Mapping
    key: tuple
    model_id: str
    transform: str
    i: int
    seed: int
    rank: int
    world: int
    local: int
    device: torch.device
    m: int
    steps: int
    size: int
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    decay: list
    tau: object
    train_ds: object
    val_loader: object
    load: dict
    amp: bool
    ddp: torch.nn.Module | None = None


def setup(spec: Mapping, model_id: str, transform: str, i: int, seed: int, index_path: str,
          shards: str | None) -> Cell:
    """The process group, the training subset m_i, the net (initialized from (global seed, cell)), its optimizer,
    the batch transform and the loaders; a size that leaves no full batch stops here, in one line."""
    cfg, gs = spec["imagenet"], spec["global_seed"]
    get(model_id), check_transform(transform)
    rank, world, local = _dist()
    device = pick_device(spec["device"], local)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    index = json.loads(Path(index_path).read_text())
    labels = np.asarray(index["train"]["labels"])
    m = I.subset_size(len(labels), i)
    batch = cfg["batch_size"]
    steps = m // batch
    if steps == 0 or batch % world:
        raise ValueError(f"imagenet: m_{i} = {m} images with batch_size = {batch} on {world} processes; "
                         f"allowed: m_i >= batch_size, batch_size a multiple of the process count")
    subset = np.sort(I.subset_order(labels, gs)[:m])
    size = image_size(cfg, model_id)
    key = (gs, "imagenet", model_id, transform, i, seed)
    torch.manual_seed(seed_int(*key, "init"))
    net = V.build(model_id, len(index["classes"]), size)
    net = V.sync_batch_norm(net, world, dist.get_backend() if world > 1 else None).to(device)
    if device.type == "cuda":  # NHWC: what cuDNN's tensor-core convolutions want under bf16
        net = net.to(memory_format=torch.channels_last)
    decay = [p for p in net.parameters() if p.ndim > 1]
    opt = torch.optim.SGD(net.parameters(), lr=0.0, momentum=cfg["momentum"], nesterov=cfg["momentum"] > 0)
    tau = I.BatchTransform(transform, size, gs, seed, device)
    decoder = cfg.get("decoder", "pil")
    raw = decoder == "torchvision" and device.type == "cuda"  # decode whole batches on the GPU (nvjpeg)
    train_ds = I.FolderDataset(index, "train", size, True, key, subset, shards, decoder, raw)
    val_ds = I.FolderDataset(index, "val", size, False, shards=shards, decoder=decoder, raw=raw)
    load = {"num_workers": cfg["workers"], "pin_memory": device.type == "cuda" and not raw,
            "persistent_workers": False, **({"collate_fn": I.collate_raw} if raw else {})}
    val_loader = torch.utils.data.DataLoader(torch.utils.data.Subset(val_ds, range(rank, len(val_ds), world)),
                                             batch_size=batch // world, **load)
    return Cell(spec, cfg, key, model_id, transform, i, seed, rank, world, local, device, m, steps, size, net, opt,
                decay, tau, train_ds, val_loader, load, device.type == "cuda" and cfg["mixed_precision"])


def restore(c: Cell, ckpt: Checkpoint) -> list[dict]:
    """The finished epochs' rows, with the net and optimizer as they were after the last one (none: [])."""
    state = ckpt.load(map_location=c.device)
    if ckpt.stale:
        print(f"ignoring checkpoint {ckpt.path}: written for another config or cell", flush=True)
    if state is None:
        return []
    c.net.load_state_dict(state["model"])
    c.opt.load_state_dict(state["opt"])
    print(f"resumed from {ckpt.path} after epoch {len(state['history'])}", flush=True)
    return state["history"]


def epoch(c: Cell, e: int) -> dict:
    """Train one epoch (its batches a function of (global seed, cell, epoch), split over the processes) and
    validate; the epoch's row."""
    t0 = time.time()
    c.train_ds.epoch = e
    batch, lb = c.cfg["batch_size"], c.cfg["batch_size"] // c.world
    order = rng(*c.key, "order", e).permutation(c.m)[: c.steps * batch].reshape(c.steps, c.world, lb)[:, c.rank]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(c.train_ds, order.ravel().tolist()), batch_size=lb,
                                         **c.load)
    tot = torch.zeros(3, dtype=torch.float64, device=c.device)
    for s, b in enumerate(loader):
        g = e * c.steps + s
        lr = learning_rate(g, c.steps, c.cfg)
        for group in c.opt.param_groups:
            group["lr"] = lr
        torch.manual_seed(seed_int(*c.key, "step", g, c.rank))  # dropout / stochastic depth
        x, y = batch_on(b, c.size, c.device)
        x = c.tau(x)
        if c.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(c.device.type, dtype=torch.bfloat16, enabled=c.amp):
            logits = c.ddp(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=c.cfg["label_smoothing"])
        c.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p in c.decay:  # the FLAX example's 0.5 * wd * |W|^2 on kernels only
                p.grad.add_(p, alpha=c.cfg["weight_decay"])
        c.opt.step()
        kill_point("step", g + 1)  # test hook (core.faults): a real kill between checkpoints, no cleanup
        tot += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double(),
                            torch.tensor(float(len(y)), dtype=torch.float64, device=c.device)])
    tot = _sum(tot, c.world)
    val = evaluate(c.net, c.val_loader, c.tau, c.device, c.world, c.size)
    return {"epoch": e + 1, "lr": lr, "train_loss": (tot[0] / tot[2]).item(), "train_top1": (tot[1] / tot[2]).item(),
            "val_loss": val[0], "val_top1": val[1], "val_top5": val[2], "images_per_s": c.steps * batch / (time.time() - t0)}


def write(c: Cell, history: list[dict], out: str) -> None:
    """The cell's per-epoch rows (imagenet.tables.SCHEMA), atomically."""
    fixed = {"run": c.spec["run_name"], "model": c.model_id, "family": get(c.model_id).family,
             "transform": c.transform, "size_index": c.i, "m": c.m, "seed": c.seed, "epochs": c.cfg["epochs"],
             "image_size": c.size, "batch_size": c.cfg["batch_size"], "world_size": c.world, "device": c.device.type,
             "precision": "bf16-autocast" if c.amp else "fp32", "code_version": code_version()}
    table = pa.Table.from_pylist([{**fixed, **h} for h in history], schema=SCHEMA)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def train_cell(spec: Mapping, model_id: str, transform: str, i: int, seed: int, index_path: str, out: str,
               checkpoint: str, shards: str | None = None) -> None:
    """One cell, every epoch, resumed from its checkpoint (core.checkpoint, written by rank 0 after each epoch)."""
    c = setup(spec, model_id, transform, i, seed, index_path, shards)
    ckpt = Checkpoint(checkpoint, jobspec.dumps([spec, model_id, transform, i, seed]), minutes=0)
    history = restore(c, ckpt)
    c.ddp = torch.nn.parallel.DistributedDataParallel(c.net, device_ids=[c.local] if c.device.type == "cuda" else None) \
        if c.world > 1 else c.net
    for e in range(len(history), c.cfg["epochs"]):
        history.append(epoch(c, e))
        if c.rank == 0:
            h = history[-1]
            print(f"epoch {e + 1}/{c.cfg['epochs']} lr {h['lr']:.4g} train loss {h['train_loss']:.4f} "
                  f"top1 {h['train_top1']:.4f} | val loss {h['val_loss']:.4f} top1 {h['val_top1']:.4f} "
                  f"top5 {h['val_top5']:.4f} | {h['images_per_s']:.1f} img/s", flush=True)
            ckpt.save((e + 1) * c.steps, {"model": c.net.state_dict(), "opt": c.opt.state_dict(), "history": history})
        if c.world > 1:
            dist.barrier()
    if c.rank == 0:
        write(c, history, out)
        ckpt.remove()
    if c.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
