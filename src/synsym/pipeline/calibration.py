"""Calibration: the rates the cost model prices work at, measured once per machine.

A short run on the current machine: the real kernel engine on one block of random images at the preset's
image size and depth, real SGD steps of every (architecture, width, seed count) the preset trains, a
Cholesky, file I/O and each rule's fixed cost (the real CLI on a tiny split). Calibrations are JSON files
(results/calibration/<host>-<device>.json), so a machine calibrates once, and a GPU node's file can plan a
cluster run from a login node (``plan --calibration FILE``).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from synsym.core import architectures as A
from synsym.pipeline.jobs import cli_line, jobs, train_seeds

VERSION = 2
STEP_FLOPS_MAX = 2e11  # calibration steps above this are measured smaller and scaled (see _train)


class PlanError(ValueError):
    pass


# ---------------------------------------------------------------- what a config needs measured


def image_size_of(config: dict) -> int:
    return config["data"]["image_size"]


def kernel_key(config: dict, family: str, padding: str | None = None) -> str:
    """A kernel calibration's key; ``padding`` defaults to model.padding (circular keys stay as calibrations
    wrote them, zero padding adds /zero: its fused kernels are other code)."""
    k = config["kernels"]
    precision = k["precision"]  # float64 keys stay as calibrations wrote them
    padding = padding or config["model"]["padding"]
    return (f"{family}/s{image_size_of(config)}/L{config['model']['depth']}/b{block_for(config, family)}/{k['engine']}"
            + ("" if precision == "float64" else f"/{precision}") + ("" if padding == "circular" else f"/{padding}"))


def train_key(config: dict, arch: str, width: int, n_seeds: int) -> str:
    """A training calibration's key; zero padding adds /zero (its 3x3 layers pad and index differently), circular
    keys stay as calibrations wrote them."""
    padding = config["model"]["padding"]
    return (f"{arch}/w{width}/S{n_seeds}/s{image_size_of(config)}/L{config['model']['depth']}/B{config['training']['batch_size']}"
            + ("" if padding == "circular" else f"/{padding}"))


def block_for(config: dict, family: str) -> int:
    from synsym.ntk.kernels import block_size_for

    k = config["kernels"]
    return block_size_for(family, image_size_of(config), k["max_memory_gb"], k["block_size"])


def needed(config: dict) -> dict[str, set]:
    """The calibration entries that predicting every job of ``config`` needs."""
    kern, train = set(), set()
    for job in jobs(config):
        w = job.wildcards
        if job.rule == "kernel":
            kern.add(kernel_key(config, w["family"]))
        elif job.rule == "kernel_curves":
            from synsym.study.kernel_curves import plan_kernels

            kern.update(kernel_key(config, f, p) for p, f, _, _ in plan_kernels(config["kernel_curves"]))
        elif job.rule == "train_cell":
            train.add((w["arch"], int(w["width"]), len(train_seeds(config, w["study"]))))
    return {"kernel": kern, "train": train}


# ---------------------------------------------------------------- calibration


def machine() -> str:
    return socket.gethostname().split(".")[0]


def default_path(device: str) -> Path:
    return Path("results") / "calibration" / f"{machine()}-{device}.json"


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.machine()
    return f"{cpu}, {os.cpu_count()} cores"


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _overheads(config: dict) -> dict:
    """Each rule's fixed cost per job: the real CLI, run once per rule on a tiny synthetic
    split (random images, the preset's image size): start-up, imports, data loading, the
    transform, the eta0 estimate, writing Parquet. Minus nothing: at this size the compute
    is a few milliseconds. Also the peak RSS of those jobs."""
    import tempfile

    from synsym.core.data import Split

    s, depth = image_size_of(config), config["model"]["depth"]
    rng = np.random.default_rng(0)
    sizes = {"train": 40, "val": 10, "test": 10}
    split = Split(**{k: v for part, n in sizes.items() for k, v in (
        (f"x_{part}", rng.standard_normal((n, s, s, 3))), (f"y_{part}", np.arange(n) % 10))})
    base = {"run_name": "calibration", "global_seed": 0, "depth": depth, "padding": config["model"]["padding"]}
    out = {}
    with tempfile.TemporaryDirectory() as d:
        split.save(f"{d}/split.npz")
        k = {"engine": config["kernels"]["engine"], "block_size": 40, "max_memory_gb": 2.0, "shards": {"fcn": 1, "conv": 1},
             "precision": config["kernels"]["precision"]}
        tc = dict(config["training"], max_steps=1, max_steps_nn=None, eval_every=1)
        # the rules' own command lines (jobs.CLI), on the tiny split
        spec = {"kernel": {**base, "kernels": k, "device": "cpu"},
                "kernel_cell": {**base, "ridges": config["kernels"]["ridges"], "seeds": [0], "device": "cpu"},
                "train_cell": {**base, "seeds": config["seeds"], "device": "cpu", "training": tc}}
        one = {"study": "grid", "arch": "fcn", "transform": "o3_per_pixel", "split": f"{d}/split.npz"}
        fields = {
            "kernel": dict(family="fcn", transform="o3_per_pixel", seed="0", shard="0", split=one["split"],
                           out=f"{d}/k/s0/shard0"),
            "kernel_cell": dict(one, m="40", kernels=f"{d}/k/s0/shard0", out_ntk=f"{d}/a.parquet", out_nngp=f"{d}/b.parquet"),
            "train_cell": dict(one, inference="nn", width="8", m="40", first_layer="gaussian", out=f"{d}/c.parquet"),
        }
        cmds = {rule: shlex.split(cli_line(rule, spec=shlex.quote(json.dumps(spec[rule])), **f)) for rule, f in fields.items()}
        cmds["prepare"] = ["-c", "import synsym.cli, synsym.study.cells"]
        rss = {}
        for rule, args in cmds.items():
            best, rss[rule] = float("inf"), float("inf")
            for _ in range(2):  # the first run may build the fused kernel (compiler children count in RSS)
                t0 = time.perf_counter()
                argv = [sys.executable, *(args if rule == "prepare" else ["-m", "synsym.cli", *args])]
                p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
                _, status, usage = os.wait4(p.pid, 0)  # this child's own peak RSS
                best = min(best, time.perf_counter() - t0)
                if status != 0:
                    raise RuntimeError(f"calibration job {rule} failed: {p.stderr.read().decode()[-500:]}")
                p.stderr.close()
                rss[rule] = min(rss[rule], usage.ru_maxrss / 1024)
            out[rule] = best
    out["scaling_cells"], rss["scaling_cells"] = out["kernel_cell"], rss["kernel_cell"]
    return {"overhead_s": out, "base_rss_mb": rss}


def _linalg() -> dict:
    """Cholesky flop rate (kernel regressions) and npz write+read rate (kernel files)."""
    import tempfile

    from scipy.linalg import cho_factor

    n = 1024
    a = np.random.default_rng(0).standard_normal((n, n))
    a = a @ a.T + n * np.eye(n)
    cho_factor(a)
    t0 = time.perf_counter()
    for _ in range(3):
        cho_factor(a)
    chol = 3 * n**3 / 3 / (time.perf_counter() - t0)
    big = np.random.default_rng(1).standard_normal((4, 1024, 1024))  # 32 MB
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        np.savez(f"{d}/x.npz", a=big)
        with np.load(f"{d}/x.npz") as z:
            z["a"].sum()
        io = big.nbytes / (time.perf_counter() - t0)
    return {"chol_flops": chol, "io_bytes_s": io}


def _kernel(config: dict, family: str, device: str, padding: str = "circular") -> dict:
    """Seconds per computed kernel entry, warm, and the first call's extra (builds, JIT)."""
    from synsym.ntk.kernels import compute_family

    b = block_for(config, family)
    s, depth = image_size_of(config), config["model"]["depth"]
    x = np.random.default_rng(0).standard_normal((2 * b, s, s, 3))
    times = []
    for _ in range(2):  # cold, then warm; 2 blocks per side: 3 block calls of b x b entries
        t0 = time.perf_counter()
        compute_family(family, x, {}, depth, b, config["kernels"]["max_memory_gb"], log=lambda _: None,
                       engine=config["kernels"]["engine"], device=device,
                       precision=config["kernels"]["precision"], padding=padding)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"s_per_entry": times[1] / (3 * b * b), "cold_extra_s": max(0.0, times[0] - times[1])}


def _train(config: dict, arch: str, width: int, n_seeds: int, device: str) -> dict:
    """Seconds per SGD step of the stacked seeds, per evaluated seed-image, and per
    power iteration of the eta0 estimate, on random images of the preset's size.

    A step costing more than STEP_FLOPS_MAX (wide nets on large images, on a CPU) is
    measured with one seed and a smaller batch and scaled up by the FLOP ratio
    (``scaled_by`` in the entry): large convolutions are compute-bound, so their
    time is linear in the images they process."""
    import torch

    from synsym.finite import models, training

    spec, s, depth = A.get(arch, config["model"]["padding"]), image_size_of(config), config["model"]["depth"]
    tc = config["training"]
    dev = torch.device(device)
    batch, seeds = tc["batch_size"], list(range(n_seeds))
    fwd = models.forward_flops(spec, width, depth, s)
    while 3 * fwd * batch * len(seeds) > STEP_FLOPS_MAX and (batch > 1 or len(seeds) > 1):
        seeds, batch = (seeds[:1], batch) if len(seeds) > 1 else (seeds, batch // 2)
    scale = tc["batch_size"] * n_seeds / (batch * len(seeds))
    n = 4 * batch
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((n, s, s, 3)), dtype=torch.float32, device=dev)
    data = {"x_train": x[None].expand(len(seeds), *x.shape), "y_train": torch.as_tensor(np.arange(n) % 10, device=dev)}
    params = models.init_params(spec, width, depth, s, seeds, 0, torch.float32, dev)

    def steps(k: int) -> float:
        batches = np.stack([training.batch_indices(0, sd, n, batch, k) for sd in seeds])
        cfg = training.TrainConfig(max_steps=k, eval_every=10**9, batch_size=batch, momentum=tc["momentum"],
                                   eval_batch=tc["eval_batch"])
        lr = torch.full((len(seeds),), 1e-3)
        _sync(device)
        t0 = time.perf_counter()
        training.train(spec, params, data, depth, lr, 0.0, batches, cfg, log=lambda _: None)
        _sync(device)
        return time.perf_counter() - t0

    with torch.no_grad():
        training.predict(spec, params, data["x_train"], depth, tc["eval_batch"])  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        training.predict(spec, params, data["x_train"], depth, tc["eval_batch"])
        _sync(device)
        eval_s = (time.perf_counter() - t0) / (n * len(seeds))
    first = steps(2)  # warm-up (allocator, oneDNN/cuDNN plans); also sizes the timed run
    k = 3 if first > 2.0 else 10
    # train() evaluates the training set (n images) after its last step: not part of a step
    step_s = max(steps(k) - eval_s * n * len(seeds), 1e-9) / k
    k_eta = min(tc["eta0_samples"], n)
    training.estimate_lambda_max(spec, params, data["x_train"][:, :k_eta], depth, iters=1)  # warm-up (functorch)
    _sync(device)
    t0 = time.perf_counter()
    training.estimate_lambda_max(spec, params, data["x_train"][:, :k_eta], depth, iters=1)
    _sync(device)
    lam_s = (time.perf_counter() - t0) * tc["eta0_samples"] / k_eta * n_seeds / len(seeds)
    return {"step_s": step_s * scale, "eval_s_per_seed_image": eval_s, "lambda_iter_s": lam_s,
            "scaled_by": scale, "step_flops": 3 * fwd * tc["batch_size"] * n_seeds}


def calibrate(config: dict, path: str | Path | None = None, log=None) -> dict:
    """Measure what ``config`` needs and is not yet in the calibration file; save it (atomically)."""
    import torch

    from synsym.core.device import resolve_device
    from synsym.core.io import atomic_path

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    device = resolve_device(config["device"]).type
    path = Path(path) if path else default_path(device)
    cal = load(path) if path.exists() and _version(path) == VERSION else {
        "version": VERSION, "machine": machine(), "device": device, "device_name": _device_name(device),
        "threads": 1, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "kernel": {}, "train": {},
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # compute jobs run with OMP_NUM_THREADS=1 (rule threads: 1)
    try:
        if "overhead_s" not in cal:
            log("calibrate: fixed cost per job of each rule (the real CLI on a tiny split)")
            cal.update(_overheads(config))
        if "chol_flops" not in cal:
            log("calibrate: Cholesky and file I/O")
            torch.set_num_threads(threads)
            cal.update(_linalg())  # regressions run with the BLAS's default threads
            torch.set_num_threads(1)
        need = needed(config)
        for key in sorted(need["kernel"] - set(cal["kernel"])):
            log(f"calibrate: kernel {key}")
            cal["kernel"][key] = _kernel(config, key.split("/")[0], device, "zero" if key.endswith("/zero") else "circular")
        for arch, width, n_seeds in sorted(need["train"]):
            key = train_key(config, arch, width, n_seeds)
            if key not in cal["train"]:
                log(f"calibrate: training {key}")
                cal["train"][key] = _train(config, arch, width, n_seeds, device)
    finally:
        torch.set_num_threads(threads)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(cal, indent=1, sort_keys=True))
    return cal


def _version(path: Path):
    try:
        return json.loads(path.read_text()).get("version")
    except (OSError, json.JSONDecodeError):
        return None


def load(path: str | Path) -> dict:
    try:
        cal = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(f"calibration file {path}: {e}") from None
    if cal.get("version") != VERSION:
        raise PlanError(f"calibration file {path}: version {cal.get('version')!r}; allowed: {VERSION} (recalibrate)")
    return cal


def up_to_date(config: dict, path: Path) -> bool:
    """Whether the calibration at ``path`` exists in this format and covers every job of ``config``."""
    return path.exists() and _version(path) == VERSION and not missing(config, load(path))


def missing(config: dict, cal: dict) -> list[str]:
    need = needed(config)
    keys = [k for k in need["kernel"] if k not in cal.get("kernel", {})]
    keys += [train_key(config, *t) for t in need["train"] if train_key(config, *t) not in cal.get("train", {})]
    return sorted(keys) + [k for k in ("overhead_s", "chol_flops") if k not in cal]

