"""One function per workflow job: what a Snakemake rule runs.

Each takes a plain ``spec`` dict (the rule's ``params``, so a config change
that matters reruns the job) and file paths, and writes its outputs
atomically.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from synsym.core import architectures, jobspec, transforms
from synsym.core.checkpoint import Checkpoint
from synsym.core.data import Split, download, make_split, training_subset
from synsym.core.device import resolve_device
from synsym.core.io import atomic_path, code_version, pred_path, write_cell
from synsym.core.seeding import rng
from synsym.ntk import kernels, regression


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare(spec: dict, out: str) -> None:
    """Download/verify CIFAR-10 and write the run's preprocessed split."""
    d = spec["data"]
    batches = download(d["url"], d["md5"], d["dir"])
    split = make_split(
        batches, d["n_train"], d["n_val"], d["n_test"], d["n_test_pool"], d["image_size"], spec["global_seed"],
        d["allow_smaller"],
    )
    log(f"split: train {len(split.y_train)} val {len(split.y_val)} test {len(split.y_test)} "
        f"image {split.x_train.shape[1:]}")
    split.save(out)


def transform_figures(spec: dict, outdir: str) -> list[str]:
    """Fig. 1 (one CIFAR-10 test image under an element of each grid transform) and Fig. S2 (the
    same image along the SO(3)^d path at the sdist study's t), drawn at the archive's 32x32.

    The image is picked by the global seed; pixels are standardized with the training batches'
    per-channel statistics, as the study does before tau, and each element is drawn for
    (global seed, ``spec["seed"]``) exactly as a 32x32 cell would draw it.
    """
    from synsym.core.data import load_cifar10
    from synsym.study import figures

    d = spec["data"]
    x_tr, _, x_te, _ = load_cifar10(download(d["url"], d["md5"], d["dir"]))
    image = x_te[int(rng(spec["global_seed"], "fig1-image").integers(len(x_te)))]
    # per channel, so 50,000 images never sit in memory as float64 all at once
    mean = np.array([x_tr[..., c].mean(dtype=np.float64) for c in range(3)]) / 255.0
    std = np.array([x_tr[..., c].std(dtype=np.float64) for c in range(3)]) / 255.0
    size, g, s = image.shape[0], spec["global_seed"], spec["seed"]
    grid = {transforms.TRANSFORMS[t][0]: transforms.make(t, size, g, s) for t in transforms.ORDER}
    path = {f"t = {t:g}": transforms.make(transforms.path_id(t), size, g, s) for t in spec["ts"]}
    paths = []
    for name, taus in (("fig1_transforms", grid), ("figS2_so3_path", path)):
        views = figures.transform_views(image, mean, std, taus)
        for label, v in views.items():
            log(f"{name} {label}: {np.mean((v == 0) | (v == 1)):.1%} of values at 0 or 1 after clipping")
        paths += figures.image_rows(views, outdir, name, across=True)
    return paths


def transformed(split: Split, transform_id: str, global_seed: int, seed: int, m: int | None = None) -> dict:
    """The cell's data: a training subset of size m, then tau applied to every split."""
    s = split.x_train.shape[1]
    tau = transforms.make(transform_id, s, global_seed, seed)
    x_tr, y_tr = training_subset(split.x_train, split.y_train, m or len(split.y_train))
    return {
        "x_train": tau.apply(x_tr), "y_train": y_tr,
        "x_val": tau.apply(split.x_val), "y_val": split.y_val,
        "x_test": tau.apply(split.x_test), "y_test": split.y_test,
    }


def kernel_job(spec: dict, family: str, transform_id: str, seed: int, shard: int, split_path: str, out: str) -> None:
    """One shard of the NNGP/NTK kernels of one family on one transformed dataset (a folder)."""
    split = Split.load(split_path)
    data = transformed(split, transform_id, spec["global_seed"], seed)
    k = spec["kernels"]
    shards = k["shards"][family]
    if not 0 <= shard < shards:
        raise ValueError(f"kernel: shard {shard} of {family}; allowed: 0 to {shards - 1} (kernels.shards.{family} = {shards})")
    t0 = time.time()
    xs = {"train": data["x_train"], "val": data["x_val"], "test": data["x_test"]}
    kernels.compute_shard(
        family, xs, spec["depth"], k["block_size"], k["max_memory_gb"], shard, shards, out,
        {"transform": transform_id, "seed": seed}, log=log, engine=k["engine"],
        device=spec["device"], precision=k["precision"], padding=spec["padding"],
    )
    log(f"kernel {family}/{transform_id}/s{seed} shard {shard + 1}/{shards}: {time.time() - t0:.1f}s")


def _base_row(spec: dict, study: str, inference: str, arch: str, transform_id: str, width, m: int, split: Split) -> dict:
    return {
        "run": spec["run_name"], "study": study, "inference": inference, "architecture": arch,
        "transform": transform_id, "width": width, "depth": spec["depth"], "n_train": m,
        "n_val": len(split.y_val), "n_test": len(split.y_test), "image_size": int(split.x_train.shape[1]),
        "code_version": code_version(), "lr": None, "l2": None, "steps": None, "eta0": None,
        "lambda_max": None, "ridge": None, "init": None, "ridgeless": None,
        "ridge_repick": None, "test_acc_repick": None, "test_mse_repick": None,
    }


CURVE_STUDIES = ("curves", "scaling")  # learning curves: one ridge held over the sizes


def held_ridges(cell_paths: list[str]) -> dict[tuple[int, str], float]:
    """(seed, kind) -> the ridge of a learning curve's largest-size kernel cells (their files)."""
    import pandas as pd

    from synsym.core.io import read_cell

    df = pd.concat([read_cell(p) for p in cell_paths])
    return {(int(r.seed), str(r.inference)): float(r.ridge) for r in df.itertuples()}


def kernel_cell(
    spec: dict, study: str, arch: str, transform_id: str, ms: list[int], split_path: str,
    kernel_paths: list[str], seeds: list[int], outs: dict[str, list[str]], held: dict | None = None,
) -> None:
    """NTK and NNGP regression of one (architecture, transform) for every seed and
    training size m in ``ms`` (the first m images: sub-matrices of one kernel).

    On a learning curve (CURVE_STUDIES) the ridge is picked on validation once, at the largest
    size, and held at every size, so the fitted exponent is not bent by a ridge that changes with
    m: ``held`` gives it when the largest size is another job's (held_ridges of its cells), else
    the largest m of ``ms`` picks it. The ridge each size would pick itself, and its results, ride
    along in the ``*_repick`` columns for the fits table to compare.
    """
    architectures.get(arch)
    split = Split.load(split_path)
    kerns = [kernels.load_kernels(dirs) for dirs in by_seed(kernel_paths, seeds)]
    device = spec["device"]  # resolved where the job started (core.jobspec)
    ridges, curve = spec["ridges"], study in CURVE_STUDIES

    def run(kern, kind: str, m: int, fixed: float | None = None) -> dict:
        return regression.regress(kern, arch, kind, split.y_train, split.y_val, split.y_test, ridges, m, device=device,
                                  fixed_ridge=fixed)

    held = dict(held or {})  # (seed, kind) -> the ridge picked at the largest m, which comes first
    for i in sorted(range(len(ms)), key=lambda i: -ms[i]):
        m = ms[i]
        for kind, paths in outs.items():
            rows, preds = [], []
            for seed, kern in zip(seeds, kerns):
                t0 = time.time()
                picked = run(kern, kind, m)
                fixed = held.setdefault((seed, kind), picked["ridge"]) if curve else picked["ridge"]
                r = picked if picked["ridge"] == fixed else run(kern, kind, m, fixed)
                row = _base_row(spec, study, kind, arch, transform_id, None, m, split)
                row.update(
                    seed=seed, train_acc=r["train_acc"], val_acc=r["val_acc"], test_acc=r["test_acc"],
                    test_acc_best=r["test_acc"], test_mse=r["test_mse"], accepted=True, ridge=r["ridge"],
                    ridgeless=r["ridgeless"], wall_s=time.time() - t0, device=device, status="ok",
                )
                if curve:
                    row.update(ridge_repick=picked["ridge"], test_acc_repick=picked["test_acc"],
                               test_mse_repick=picked["test_mse"])
                rows.append(row)
                preds.append(r["test_pred"])
                log(f"{kind} {arch}/{transform_id} m={m} seed {seed}: test_acc {r['test_acc']:.4f} "
                    f"mse {r['test_mse']:.4f} ridge {r['ridge']:g}{' (ridgeless)' if r['ridgeless'] else ''}"
                    + (f"; re-picked at this m: ridge {picked['ridge']:g} test_acc {picked['test_acc']:.4f}"
                       if curve else ""))
            write_cell(rows, paths[i])
            save_preds(paths[i], np.stack(preds), seeds)


def by_seed(shard_dirs: list[str], seeds: list[int]) -> list[list[str]]:
    """The shard folders (.../s{seed}/shard{k}) of each kernel seed, in the order of ``seeds``."""
    groups: dict[str, list[str]] = {}
    for d in shard_dirs:
        groups.setdefault(Path(d).parent.name, []).append(d)
    missing = [s for s in seeds if f"s{s}" not in groups]
    if missing:
        raise ValueError(f"kernel-cell: no kernel shards for seed {missing[0]}; got {', '.join(sorted(groups))}")
    return [groups[f"s{s}"] for s in seeds]


def save_preds(cell_path: str, preds: np.ndarray, seeds: list[int]) -> None:
    """Per-seed test predictions beside a cell (S-Dist is computed from these)."""
    with atomic_path(pred_path(cell_path)) as tmp, open(tmp, "wb") as f:
        np.savez(f, pred=preds, seeds=np.asarray(seeds))


def train_cell(
    spec: dict, study: str, inference: str, arch: str, transform_id: str, width: int, m: int,
    split_path: str, out: str, first_layer: str = "gaussian",
) -> None:
    """Train every seed of one finite-width cell together and write its table."""
    import torch  # only training jobs pay for importing torch

    from synsym.finite import models, training

    a = architectures.get(arch, spec["padding"])
    architectures.check_inference(inference, architectures.FINITE_INFERENCES)
    device = resolve_device(spec["device"])
    split = Split.load(split_path)
    architectures.check_image_size(a, split.x_train.shape[1])
    seeds, g = spec["seeds"], spec["global_seed"]
    tc = training.train_config(spec["training"], inference)
    dtype = torch.float32
    # Each seed has its own transform element (resampled per run, as in the paper).
    per_seed = [transformed(split, transform_id, g, s, m) for s in seeds]
    to = lambda a: torch.as_tensor(np.stack(a), dtype=dtype, device=device)  # noqa: E731
    # Images are stacked per seed: (S, N, H, W, 3); batches index the N axis per seed.
    x_train = to([d["x_train"] for d in per_seed])
    y_train = torch.as_tensor(per_seed[0]["y_train"], device=device)
    n = len(y_train)
    run = training.setup(a, width, spec["depth"], x_train, seeds, inference, tc, g, first_layer)
    params, lam, eta0, lr, l2 = run.params, run.lambda_max, run.eta0, run.lr, run.l2
    log(f"{inference} {arch} w={width} {transform_id} m={n} seeds {seeds} on {device}: "
        f"{models.n_params(params)} params/seed, lambda_max {lam.tolist()} eta0 {eta0.tolist()}")
    t0 = time.time()
    data = {"x_train": x_train, "y_train": y_train}
    for part in ("val", "test"):
        data[f"x_{part}"] = to([d[f"x_{part}"] for d in per_seed])
        data[f"y_{part}"] = torch.as_tensor(per_seed[0][f"y_{part}"], device=device)
    key = jobspec.dumps([spec, study, inference, arch, transform_id, width, m, first_layer])
    ckpt = Checkpoint(f"{out}.ckpt.pt", key, tc.checkpoint_minutes)
    res = training.train(a, params, data, spec["depth"], lr, l2, run.batches, tc, log=log, checkpoint=ckpt)
    wall = time.time() - t0
    rows = []
    y1h = np.eye(10)[split.y_test]
    for i, seed in enumerate(seeds):
        pred = res["test_pred"][i]
        status = "diverged" if res["diverged"][i] else "ok"
        row = _base_row(spec, study, inference, arch, transform_id, width, n, split)
        row.update(
            seed=seed, lr=float(lr[i]), l2=l2, steps=int(res["steps"][i]), train_acc=float(res["train_acc"][i]),
            val_acc=float(res["val_acc"][i]), test_acc=float(res["test_acc"][i]),
            test_acc_best=float(res["test_acc_best"][i]), test_mse=float(np.mean((pred - y1h) ** 2)),
            accepted=bool(res["train_best"][i] >= tc.accept_train_acc and status == "ok"),
            wall_s=wall, device=str(device), eta0=float(eta0[i]), lambda_max=float(lam[i]),
            status=status, init=first_layer,
        )
        rows.append(row)
    write_cell(rows, out)
    save_preds(out, res["test_pred"], seeds)
    ckpt.remove()
