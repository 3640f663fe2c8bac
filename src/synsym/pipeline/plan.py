"""Cost model and planner: every job's runtime and memory, before running anything.

Work is counted exactly from the config (kernel entries of the blocked upper
triangle, Cholesky flops of every ridge, SGD steps and evaluated images), and
the rates come from a short calibration on the current machine: the real
engine on one block of random images at the preset's image size and depth,
real SGD steps of every (architecture, width, seed count) the preset trains, a
Cholesky, file I/O and the interpreter's start-up. Calibrations are JSON files
(results/calibration/<host>-<device>.json) so a machine calibrates once, and a
GPU node's file can plan a cluster run from a login node
(``plan --calibration FILE``).

Predictions are what a job costs if it runs to its cap: SGD that fits its
training set stops early, so training times are upper bounds.
The Slurm requests (workflow/rules/*.smk ``resources``) are these predictions
times ``plan.safety_factor``, scaled by ``plan.retry_scale`` per retry.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from synsym.core import architectures as A
from synsym.finite.recipe import step_cap
from synsym.pipeline.jobs import Job, jobs, read_benchmarks, train_seeds
from synsym.pipeline.steps import predicted_steps

VERSION = 2
CIFAR_BYTES = 170e6  # the official archive: prepare reads it ~3 times (md5, extraction, unpickling)
LOCAL_S = 5.0  # merges, fits, figures: run on the submit host, not planned in detail
STEP_FLOPS_MAX = 2e11  # calibration steps above this are measured smaller and scaled (see _train)


class PlanError(ValueError):
    pass


# ---------------------------------------------------------------- what a config needs measured


def _image_size(config: dict) -> int:
    return config["data"]["image_size"]


def kernel_key(config: dict, family: str, padding: str | None = None) -> str:
    """A kernel calibration's key; ``padding`` defaults to model.padding (circular keys stay as calibrations
    wrote them, zero padding adds /zero: its fused kernels are other code)."""
    k = config["kernels"]
    precision = k.get("precision", "float64")  # float64 keys stay as calibrations wrote them
    padding = padding or config["model"].get("padding", "circular")
    return (f"{family}/s{_image_size(config)}/L{config['model']['depth']}/b{_block(config, family)}/{k['engine']}"
            + ("" if precision == "float64" else f"/{precision}") + ("" if padding == "circular" else f"/{padding}"))


def train_key(config: dict, arch: str, width: int, n_seeds: int) -> str:
    return f"{arch}/w{width}/S{n_seeds}/s{_image_size(config)}/L{config['model']['depth']}/B{config['training']['batch_size']}"


def _block(config: dict, family: str) -> int:
    from synsym.ntk.kernels import block_size_for

    k = config["kernels"]
    return block_size_for(family, _image_size(config), k["max_memory_gb"], k["block_size"])


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

    s, depth = _image_size(config), config["model"]["depth"]
    rng = np.random.default_rng(0)
    sizes = {"train": 40, "val": 10, "test": 10}
    split = Split(**{k: v for part, n in sizes.items() for k, v in (
        (f"x_{part}", rng.standard_normal((n, s, s, 3))), (f"y_{part}", np.arange(n) % 10))})
    base = {"run_name": "calibration", "global_seed": 0, "depth": depth}
    out = {}
    with tempfile.TemporaryDirectory() as d:
        split.save(f"{d}/split.npz")
        k = {"engine": config["kernels"]["engine"], "block_size": 40, "max_memory_gb": 2.0, "shards": {"fcn": 1, "conv": 1}}
        tc = dict(config["training"], max_steps=1, max_steps_nn=None, eval_every=1)
        cmds = {
            "kernel": ["kernel", "--spec", json.dumps({**base, "kernels": k, "device": "cpu"}), "--family", "fcn",
                       "--transform", "o3_per_pixel", "--seed", "0", "--split", f"{d}/split.npz", "--out", f"{d}/k/s0/shard0"],
            "kernel_cell": ["kernel-cell", "--spec", json.dumps({**base, "ridges": config["kernels"]["ridges"], "seeds": [0]}),
                            "--study", "grid", "--arch", "fcn", "--transform", "o3_per_pixel", "--m", "40", "--split",
                            f"{d}/split.npz", "--kernels", f"{d}/k/s0/shard0", "--out-ntk", f"{d}/a.parquet",
                            "--out-nngp", f"{d}/b.parquet"],
            "train_cell": ["train", "--spec", json.dumps({**base, "seeds": config["seeds"], "device": "cpu", "training": tc}),
                           "--study", "grid", "--inference", "nn", "--arch", "fcn", "--transform", "o3_per_pixel",
                           "--width", "8", "--m", "40", "--split", f"{d}/split.npz", "--out", f"{d}/c.parquet"],
        }
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

    b = _block(config, family)
    s, depth = _image_size(config), config["model"]["depth"]
    x = np.random.default_rng(0).standard_normal((2 * b, s, s, 3))
    times = []
    for _ in range(2):  # cold, then warm; 2 blocks per side: 3 block calls of b x b entries
        t0 = time.perf_counter()
        compute_family(family, x, {}, depth, b, config["kernels"]["max_memory_gb"], log=lambda _: None,
                       engine=config["kernels"]["engine"], device=device,
                       precision=config["kernels"].get("precision", "float64"), padding=padding)
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

    spec, s, depth = A.get(arch), _image_size(config), config["model"]["depth"]
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


# ---------------------------------------------------------------- the cost model


def _blocks(n: int, b: int) -> int:
    return math.ceil(n / b)


def _sizes(config: dict) -> dict[str, int]:
    d = config["data"]
    return {"train": d["n_train"], "val": d["n_val"], "test": d["n_test"]}


def kernel_entries(config: dict, family: str, shard: int | None = None) -> int:
    """Entries the engine computes for one (family, transform, seed): b x b per block call, upper
    triangle of train-train plus the val- and test-train cross blocks (padding included); with
    ``shard``, that shard's part (of kernels.shards.<family>)."""
    from synsym.ntk.kernels import block_calls, shard_rows

    b, n = _block(config, family), config["data"]["n_train"]
    if shard is None:
        return _entries(n, config["data"]["n_val"], config["data"]["n_test"], b)
    rows = shard_rows(_sizes(config), b, config["kernels"]["shards"][family])[shard]
    return sum(block_calls(r, n, b) for r in rows) * b * b


def _entries(n: int, n_val: int, n_test: int, b: int) -> int:
    """Entries of one unsharded kernel over n training images (block-padded upper triangle + cross blocks)."""
    nt = _blocks(n, b)
    return (nt * (nt + 1) // 2 + (_blocks(n_val, b) + _blocks(n_test, b)) * nt) * b * b


def _shard_row_count(config: dict, family: str, shard: int) -> int:
    from synsym.ntk.kernels import shard_rows

    rows = shard_rows(_sizes(config), _block(config, family), config["kernels"]["shards"][family])[shard]
    return sum(i1 - i0 for _, i0, i1 in rows)


def kernel_flops(config: dict) -> float:
    """float64 FLOPs of every conv-family kernel job of the study (engine.flops_per_entry per entry)."""
    from synsym.ntk.engine import flops_per_entry

    n = sum(1 for j in jobs(config) if j.rule == "kernel" and j.wildcards["family"] == "conv")
    n //= config["kernels"]["shards"]["conv"]  # the shards of one kernel add up to one kernel's entries
    return n * kernel_entries(config, "conv") * flops_per_entry(_image_size(config), config["model"]["depth"])


def _members(family: str) -> int:
    from synsym.ntk.kernels import FAMILY_MEMBERS

    return len(FAMILY_MEMBERS[family])


def _archive_bytes(config: dict) -> float:
    """Size of the CIFAR-10 archive that prepare reads: known for a file:// URL, else the official one's."""
    url = config["data"]["url"]
    if url.startswith("file://") and Path(url[7:]).exists():
        return Path(url[7:]).stat().st_size
    return CIFAR_BYTES


def _regression_read_bytes(config: dict, m: int) -> int:
    """What one regression reads of one readout's stripes: train-train (m x m), val- and test-train (m columns)."""
    d = config["data"]
    return 8 * m * (m + d["n_val"] + d["n_test"])


def _regression_s(config: dict, cal: dict, m: int) -> float:
    """One Cholesky per ridge per kind and kernel seed (its weights serve validation, then the best
    ridge's test and train predictions), plus reading the stripes. The ridgeless candidate adds one
    (K_tt usually factors at ridge 0, the first tried)."""
    d, r = config["data"], len(config["kernels"]["ridges"]) + 1
    flops = m**3 / 3 * r + 2 * m * m * 10 * r + 2 * m * 10 * (d["n_val"] * r + d["n_test"] + m)
    per = flops / cal["chol_flops"] + _regression_read_bytes(config, m) / cal["io_bytes_s"]
    return 2 * len(config["kernel_seeds"]) * per


def _activation_mb(config: dict, arch: str, width: int, n_seeds: int, batch: int, train: bool = True) -> float:
    """float32 activations of one batch: every layer's kept for the backward pass (x3 with the
    gradients) when training; two layers at a time when evaluating (no_grad)."""
    s, depth = _image_size(config), config["model"]["depth"]
    per_layer = width if A.get(arch).body == "dense" else width * s * s
    return 4 * (3 * depth if train else 2) * batch * n_seeds * per_layer / 2**20


def predict(job: Job, config: dict, cal: dict) -> tuple[float, float]:
    """(seconds, MB) one job needs on the calibrated machine."""
    w, d = job.wildcards, config["data"]
    rule = "kernel" if job.rule == "kernel_curves" and job.rule not in cal["overhead_s"] else job.rule  # its CLI start
    base_s, base_mb = cal["overhead_s"][rule], cal["base_rss_mb"][rule]
    images = d["n_train"] + d["n_val"] + d["n_test"]
    split_mb = images * _image_size(config) ** 2 * 3 * 8 / 2**20
    if job.rule == "prepare":
        return base_s + 3 * _archive_bytes(config) / cal["io_bytes_s"], base_mb + 200 + 2 * split_mb
    if job.rule == "kernel":
        fam, shard = w["family"], int(w.get("shard", 0))
        k = cal["kernel"][kernel_key(config, fam)]
        stripe_b = 8 * 2 * _members(fam) * d["n_train"] * _shard_row_count(config, fam, shard)  # the shard's .npy files
        secs = (base_s + k["cold_extra_s"] + kernel_entries(config, fam, shard) * k["s_per_entry"]
                + stripe_b / cal["io_bytes_s"])
        from synsym.ntk.kernels import BYTES_PER_ENTRY

        b = _block(config, fam)
        block_mb = b * b * (_image_size(config) ** 4 if fam == "conv" else 1) * BYTES_PER_ENTRY / 2**20
        row_block_mb = 8 * 2 * _members(fam) * d["n_train"] * b / 2**20  # written through memory maps
        return secs, base_mb + 2 * split_mb + block_mb + row_block_mb
    if job.rule in ("kernel_cell", "scaling_cells"):
        sizes = [int(w["m"])] if job.rule == "kernel_cell" else list(config["curves"]["sizes"])
        secs = base_s + sum(_regression_s(config, cal, m) for m in sizes)
        # K_tt and its factor (m x m each), and one of val- / test-train at a time
        m = max(sizes)
        return secs, base_mb + split_mb + 8 * m * (2 * m + max(d["n_val"], d["n_test"]) + 20) / 2**20
    if job.rule == "kernel_curves":
        return _kernel_curves(config, cal, base_s, base_mb, split_mb)
    if job.rule == "train_cell":
        tc = config["training"]
        arch, width, m = w["arch"], int(w["width"]), int(w["m"])
        n_seeds = len(train_seeds(config, w["study"]))
        t = cal["train"][train_key(config, arch, width, n_seeds)]
        secs = base_s + 30 * t["lambda_iter_s"] + train_steps_s(config, t, n_seeds, m, job_steps(job, config)[0])
        data_mb = n_seeds * (m + d["n_val"] + d["n_test"]) * _image_size(config) ** 2 * 3 * 4 / 2**20
        act = max(_activation_mb(config, arch, width, n_seeds, tc["batch_size"]),
                  _activation_mb(config, arch, width, n_seeds, tc["eval_batch"], train=False))
        return secs, base_mb + split_mb + 2 * data_mb + act
    raise PlanError(f"no cost model for rule {job.rule!r}")


def _kernel_curves(config: dict, cal: dict, base_s: float, base_mb: float, split_mb: float) -> tuple[float, float]:
    """The kernel-curves job: each kernel it computes (synsym.study.kernel_curves.plan_kernels) at its
    calibrated cost per entry, and one regression per (padding, transform, architecture, size, draw)."""
    from synsym.study.kernel_curves import plan_kernels, sizes_of

    kc, d = config["kernel_curves"], config["data"]
    secs, top = base_s, 0
    for padding, family, _, m in plan_kernels(kc):
        k = cal["kernel"][kernel_key(config, family, padding)]
        secs += k["cold_extra_s"] + _entries(m, d["n_val"], d["n_test"], _block(config, family)) * k["s_per_entry"]
        top = max(top, m)
    per_arch = len(kc["paddings"]) * len(A.ARCHITECTURES) / len(config["kernel_seeds"])
    for most in kc["transforms"].values():
        for m in sizes_of(kc, most):
            secs += per_arch * (1 if m == most else kc["draws"]) * _regression_s(config, cal, m)
    # a kernel's train-train and cross stripes of one readout and kind, and a draw's sub-matrix and factor
    return secs, base_mb + split_mb + 8 * top * (3 * top + d["n_val"] + d["n_test"]) / 2**20


def job_steps(job: Job, config: dict) -> tuple[int, int]:
    """(SGD steps a training job is priced at, its cap): the measured power law's prediction for its
    architecture, inference and n_train (synsym.pipeline.steps), at most the cap; the cap when
    plan.price_steps is "cap" or nothing was measured."""
    w = job.wildcards
    cap = step_cap(config["training"], w["finite"])
    if config["plan"].get("price_steps", "predicted") == "cap":
        return cap, cap
    return predicted_steps(w["arch"], w["finite"], int(w["m"]), cap)[0], cap


def train_steps_s(config: dict, t: dict, n_seeds: int, m: int, steps: int) -> float:
    """Seconds of ``steps`` SGD steps of a seed stack plus its evaluations every training.eval_every."""
    d = config["data"]
    n_evals = math.ceil(steps / config["training"]["eval_every"])
    return steps * t["step_s"] + n_evals * n_seeds * (m + d["n_val"] + d["n_test"]) * t["eval_s_per_seed_image"]


# Rules whose jobs checkpoint and resume (synsym.finite.training.Checkpoint): an attempt asks for at
# most plan.max_job_hours, and a job killed at that limit goes on in its next attempt.
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
    runtime, mem = math.ceil(fallback[0] * grow), math.ceil(fallback[1] * grow)
    if rule in RESUMABLE:  # every attempt fits the cluster's limits, planned or not (as request() caps them)
        p = config["plan"]
        runtime = min(runtime, math.ceil(60 * p["max_job_hours"]))
        mem = min(mem, max(fallback[1], math.ceil(1024 * p["max_job_mem_gb"])))
    return runtime, mem


# ---------------------------------------------------------------- the bill


def bill(config: dict, cal: dict) -> list[dict]:
    """One row per job: rule, name, predicted seconds and MB, and the Slurm request."""
    rows = []
    for job in jobs(config):
        s, mb = predict(job, config, cal)
        rt, mem = request(s, mb, config, rule=job.rule)
        row = {"rule": job.rule, "job": job.name, "pred_s": s, "pred_mb": mb, "req_min": rt, "req_mb": mem}
        if job.rule == "train_cell":  # also what the job would cost run to its cap
            w = job.wildcards
            steps, cap = job_steps(job, config)
            n_seeds = len(train_seeds(config, w["study"]))
            t = cal["train"][train_key(config, w["arch"], int(w["width"]), n_seeds)]
            m = int(w["m"])
            row.update(arch=w["arch"], inference=w["finite"], steps=steps, cap=cap,
                       cap_s=s + train_steps_s(config, t, n_seeds, m, cap) - train_steps_s(config, t, n_seeds, m, steps))
        rows.append(row)
    return rows


def reuse_line(config: dict, cal: dict, unit: str) -> str:
    """The kernel jobs' bill with and without kernels.reuse_invariant (one kernel job per Theorem 4.1
    class vs one per transform), the rest of the config as given."""
    import copy

    cost = {}
    for reuse in (False, True):
        probe = copy.deepcopy(config)
        probe["kernels"]["reuse_invariant"] = reuse
        ks = [predict(j, probe, cal)[0] for j in jobs(probe) if j.rule == "kernel"]
        cost[reuse] = (len(ks), sum(ks) / 3600)
    on = config["kernels"].get("reuse_invariant", True)
    return (f"# kernel jobs: {cost[False][0]} jobs, {cost[False][1]:,.1f} {unit} one per transform; {cost[True][0]} jobs, "
            f"{cost[True][1]:,.1f} {unit} one per Theorem 4.1 class (kernels.reuse_invariant = {str(on).lower()}, "
            f"this plan: {'the latter' if on else 'the former'})")


def step_table(rows: list[dict], config: dict) -> str:
    """Training jobs by (architecture, inference): n_train range, predicted steps and cap, and the
    device-hours at the predicted steps vs at the cap (Markdown)."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["rule"] == "train_cell":
            by.setdefault((r["arch"], r["inference"]), []).append(r)
    lines = ["| architecture | inference | jobs | predicted steps (min-max) | cap | alpha (fit sizes) | "
             "hours at predicted | hours at cap |", "|---|---|---|---|---|---|---|---|"]
    for (arch, inf), rs in sorted(by.items()):
        f = predicted_steps(arch, inf, 1, 1)[1] if config["plan"].get("price_steps", "predicted") != "cap" else None
        fit = f"{f.alpha:.2f} ({', '.join(map(str, f.sizes))})" if f else "priced at the cap"
        lines.append(f"| {arch} | {inf} | {len(rs)} | {min(r['steps'] for r in rs):,}-{max(r['steps'] for r in rs):,} | "
                     f"{max(r['cap'] for r in rs):,} | {fit} | {sum(r['pred_s'] for r in rs) / 3600:.3g} | "
                     f"{sum(r['cap_s'] for r in rs) / 3600:.3g} |")
    return "\n".join(lines)


def over_limits(rows: list[dict], config: dict) -> list[dict]:
    """The jobs predicted to need more than plan.max_job_mem_gb, or to run longer than plan.max_job_hours
    without resuming (a resumable job runs in several attempts instead)."""
    p = config["plan"]
    return [r for r in rows if r["pred_mb"] > 1024 * p["max_job_mem_gb"]
            or (r["pred_s"] > 3600 * p["max_job_hours"] and r["rule"] not in RESUMABLE)]


def shards_needed(config: dict, cal: dict, family: str) -> int | None:
    """The fewest kernels.shards.<family> whose every shard fits plan.max_job_hours and
    plan.max_job_mem_gb on the calibrated machine (None: not even one row block per shard fits)."""
    import copy

    from synsym.ntk.kernels import row_blocks

    p, n_blocks = config["plan"], len(row_blocks(_sizes(config), _block(config, family)))
    probe = copy.deepcopy(config)
    job = lambda k: Job("kernel", {"family": family, "transform": "identity", "seed": "0", "shard": str(k)})  # noqa: E731
    probe["kernels"]["shards"][family] = 1
    whole_s = predict(job(0), probe, cal)[0]
    shards = max(1, math.ceil(whole_s / (3600 * p["max_job_hours"])))
    while shards <= n_blocks:
        probe["kernels"]["shards"][family] = shards
        worst = [predict(job(k), probe, cal) for k in range(shards)]
        if max(s for s, _ in worst) <= 3600 * p["max_job_hours"] and max(mb for _, mb in worst) <= 1024 * p["max_job_mem_gb"]:
            return shards
        shards = max(shards + 1, math.ceil(shards * max(s for s, _ in worst) / (3600 * p["max_job_hours"])))
    return None


def summary(rows: list[dict], unit: str) -> str:
    """Per-rule totals and the whole preset, as a Markdown table."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["rule"], []).append(r)
    lines = [f"| rule | jobs | predicted {unit} | longest job | peak memory | requested {unit} |",
             "|---|---|---|---|---|---|"]
    for rule, rs in sorted(by.items(), key=lambda kv: -sum(r["pred_s"] for r in kv[1])):
        lines.append(f"| {rule} | {len(rs)} | {sum(r['pred_s'] for r in rs) / 3600:.3g} | "
                     f"{_dur(max(r['pred_s'] for r in rs))} | {max(r['pred_mb'] for r in rs) / 1024:.3g} GB | "
                     f"{sum(r['req_min'] for r in rs) / 60:.3g} |")
    total = sum(r["pred_s"] for r in rows) / 3600
    lines.append(f"| **total** | {len(rows)} | **{total:.3g}** | | | {sum(r['req_min'] for r in rows) / 60:.3g} |")
    return "\n".join(lines)


def _dur(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h" if s < 48 * 3600 else f"{s / 86400:.1f} d"


def measured(run: str | Path) -> dict[str, tuple[float, float]]:
    """(seconds, peak RSS in MB) per job from Snakemake's benchmark TSVs under results/<run>/benchmarks,
    keyed like Job.name (synsym.pipeline.jobs reads them, from the rules' own patterns)."""
    return {job.name: v for job, v in read_benchmarks(run).items()}


def compare(rows: list[dict], meas: dict[str, tuple[float, float]]) -> str:
    """Predicted vs measured seconds (summed) and peak memory (largest job) per rule, over the
    jobs that have a benchmark."""
    by: dict[str, list[tuple[dict, tuple[float, float]]]] = {}
    for r in rows:
        if r["job"] in meas:
            by.setdefault(r["rule"], []).append((r, meas[r["job"]]))
    lines = ["| rule | jobs measured | predicted s | measured s | measured / predicted | predicted peak MB | "
             "measured peak MB |", "|---|---|---|---|---|---|---|"]
    for rule, pm in sorted(by.items()):
        p, m = sum(r["pred_s"] for r, _ in pm), sum(x[0] for _, x in pm)
        lines.append(f"| {rule} | {len(pm)} | {p:.0f} | {m:.0f} | {m / p:.2f} | "
                     f"{max(r['pred_mb'] for r, _ in pm):.0f} | {max(x[1] for _, x in pm):.0f} |")
    return "\n".join(lines)


def rule_ratios(rows: list[dict], meas: dict[str, tuple[float, float]]) -> dict[str, float]:
    """measured / predicted total seconds per rule (the planner test's check)."""
    out: dict[str, list[float]] = {}
    for r in rows:
        if r["job"] in meas:
            out.setdefault(r["rule"], [0.0, 0.0])
            out[r["rule"]][0] += r["pred_s"]
            out[r["rule"]][1] += meas[r["job"]][0]
    return {k: m / p for k, (p, m) in out.items()}


__all__ = ["calibrate", "load", "predict", "request", "resources", "bill", "summary", "measured", "compare", "up_to_date"]
