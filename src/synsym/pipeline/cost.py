"""The cost model: every job's runtime and memory, from work counted exactly in the config (kernel entries
of the blocked upper triangle, Cholesky flops of every ridge, SGD steps and evaluated images) at a
calibration's rates (pipeline.calibration). Training is priced at its predicted steps to stop, at most its cap.
"""

from __future__ import annotations

import math
from pathlib import Path

from synsym.core import architectures as A
from synsym.finite.recipe import step_cap
from synsym.pipeline.calibration import PlanError, block_for, image_size_of, kernel_key, train_key
from synsym.pipeline.jobs import Job, jobs, train_seeds
from synsym.pipeline.steps import predicted_steps

CIFAR_BYTES = 170e6  # the official archive: prepare reads it ~3 times (md5, extraction, unpickling)
LOCAL_S = 5.0  # merges, fits, figures: run on the submit host, not planned in detail


# ---------------------------------------------------------------- the cost model


def _blocks(n: int, b: int) -> int:
    return math.ceil(n / b)


def test_images(d: dict) -> int:
    """The run's test images: the test batch's n_test and the training pool's n_test_pool (``d``: config["data"])."""
    return d["n_test"] + d["n_test_pool"]


def split_sizes(config: dict) -> dict[str, int]:
    d = config["data"]
    return {"train": d["n_train"], "val": d["n_val"], "test": test_images(d)}


def kernel_entries(config: dict, family: str, shard: int | None = None) -> int:
    """Entries the engine computes for one (family, transform, seed): b x b per block call, upper
    triangle of train-train plus the val- and test-train cross blocks (padding included); with
    ``shard``, that shard's part (of kernels.shards.<family>)."""
    from synsym.ntk.kernels import block_calls, shard_rows

    b, n = block_for(config, family), config["data"]["n_train"]
    if shard is None:
        return _entries(n, config["data"]["n_val"], test_images(config["data"]), b)
    rows = shard_rows(split_sizes(config), b, config["kernels"]["shards"][family])[shard]
    return sum(block_calls(r, n, b) for r in rows) * b * b


def _entries(n: int, n_val: int, n_test: int, b: int) -> int:
    """Entries of one unsharded kernel over n training images (block-padded upper triangle + cross blocks)."""
    nt = _blocks(n, b)
    return (nt * (nt + 1) // 2 + (_blocks(n_val, b) + _blocks(n_test, b)) * nt) * b * b


def _shard_row_count(config: dict, family: str, shard: int) -> int:
    from synsym.ntk.kernels import shard_rows

    rows = shard_rows(split_sizes(config), block_for(config, family), config["kernels"]["shards"][family])[shard]
    return sum(i1 - i0 for _, i0, i1 in rows)


def kernel_flops(config: dict) -> float:
    """float64 FLOPs of every conv-family kernel job of the study (engine.flops_per_entry per entry)."""
    from synsym.ntk.engine import flops_per_entry

    n = sum(1 for j in jobs(config) if j.rule == "kernel" and j.wildcards["family"] == "conv")
    n //= config["kernels"]["shards"]["conv"]  # the shards of one kernel add up to one kernel's entries
    return n * kernel_entries(config, "conv") * flops_per_entry(image_size_of(config), config["model"]["depth"])


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
    return 8 * m * (m + d["n_val"] + test_images(d))


def _regression_s(config: dict, cal: dict, m: int) -> float:
    """One Cholesky per ridge per kind and kernel seed (its weights serve validation, then the best
    ridge's test and train predictions), plus reading the stripes. The ridgeless candidate adds one
    (K_tt usually factors at ridge 0, the first tried)."""
    d, r = config["data"], len(config["kernels"]["ridges"]) + 1
    flops = m**3 / 3 * r + 2 * m * m * 10 * r + 2 * m * 10 * (d["n_val"] * r + test_images(d) + m)
    per = flops / cal["chol_flops"] + _regression_read_bytes(config, m) / cal["io_bytes_s"]
    return 2 * len(config["kernel_seeds"]) * per


def _activation_mb(config: dict, arch: str, width: int, n_seeds: int, batch: int, train: bool = True) -> float:
    """float32 activations of one batch: every layer's kept for the backward pass (x3 with the
    gradients) when training; two layers at a time when evaluating (no_grad)."""
    s, depth = image_size_of(config), config["model"]["depth"]
    per_layer = width if A.get(arch).body == "dense" else width * s * s
    return 4 * (3 * depth if train else 2) * batch * n_seeds * per_layer / 2**20


def predict(job: Job, config: dict, cal: dict) -> tuple[float, float]:
    """(seconds, MB) one job needs on the calibrated machine."""
    w, d = job.wildcards, config["data"]
    rule = "kernel" if job.rule == "kernel_curves" and job.rule not in cal["overhead_s"] else job.rule  # its CLI start
    base_s, base_mb = cal["overhead_s"][rule], cal["base_rss_mb"][rule]
    images = d["n_train"] + d["n_val"] + test_images(d)
    split_mb = images * image_size_of(config) ** 2 * 3 * 8 / 2**20
    if job.rule == "prepare":
        return base_s + 3 * _archive_bytes(config) / cal["io_bytes_s"], base_mb + 200 + 2 * split_mb
    if job.rule == "kernel":
        fam, shard = w["family"], int(w.get("shard", 0))
        k = cal["kernel"][kernel_key(config, fam)]
        stripe_b = 8 * 2 * _members(fam) * d["n_train"] * _shard_row_count(config, fam, shard)  # the shard's .npy files
        secs = (base_s + k["cold_extra_s"] + kernel_entries(config, fam, shard) * k["s_per_entry"]
                + stripe_b / cal["io_bytes_s"])
        from synsym.ntk.kernels import BYTES_PER_ENTRY

        b = block_for(config, fam)
        block_mb = b * b * (image_size_of(config) ** 4 if fam == "conv" else 1) * BYTES_PER_ENTRY / 2**20
        row_block_mb = 8 * 2 * _members(fam) * d["n_train"] * b / 2**20  # written through memory maps
        return secs, base_mb + 2 * split_mb + block_mb + row_block_mb
    if job.rule in ("kernel_cell", "scaling_cells"):
        sizes = [int(w["m"])] if job.rule == "kernel_cell" else list(config["curves"]["sizes"])
        secs = base_s + sum(_regression_s(config, cal, m) for m in sizes)
        # K_tt and its factor (m x m each), and one of val- / test-train at a time
        m = max(sizes)
        return secs, base_mb + split_mb + 8 * m * (2 * m + max(d["n_val"], test_images(d)) + 20) / 2**20
    if job.rule == "kernel_curves":
        return _kernel_curves(config, cal, base_s, base_mb, split_mb)
    if job.rule == "train_cell":
        tc = config["training"]
        arch, width, m = w["arch"], int(w["width"]), int(w["m"])
        n_seeds = len(train_seeds(config, w["study"]))
        t = cal["train"][train_key(config, arch, width, n_seeds)]
        secs = base_s + 30 * t["lambda_iter_s"] + train_steps_s(config, t, n_seeds, m, job_steps(job, config)[0])
        data_mb = n_seeds * (m + d["n_val"] + test_images(d)) * image_size_of(config) ** 2 * 3 * 4 / 2**20
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
        secs += k["cold_extra_s"] + _entries(m, d["n_val"], test_images(d), block_for(config, family)) * k["s_per_entry"]
        top = max(top, m)
    per_arch = len(kc["paddings"]) * len(A.ARCHITECTURES) / len(config["kernel_seeds"])
    for most in kc["transforms"].values():
        for m in sizes_of(kc, most):
            secs += per_arch * (1 if m == most else kc["draws"]) * _regression_s(config, cal, m)
    # a kernel's train-train and cross stripes of one readout and kind, and a draw's sub-matrix and factor
    return secs, base_mb + split_mb + 8 * top * (3 * top + d["n_val"] + test_images(d)) / 2**20


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
    return steps * t["step_s"] + n_evals * n_seeds * (m + d["n_val"] + test_images(d)) * t["eval_s_per_seed_image"]


# Rules whose jobs checkpoint and resume (synsym.finite.training.Checkpoint): an attempt asks for at
