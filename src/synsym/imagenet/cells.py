"""The ImageNet studies' cells: which (model, transform, size index, seed) jobs a config
implies, where each writes, what launches it, and what the whole plan costs."""

from __future__ import annotations

from synsym.imagenet.data import subset_size
from synsym.imagenet.registry import STUDIES, get


def image_size(cfg: dict, model: str) -> int:
    """The training resolution: imagenet.image_size, or the model's native one."""
    return cfg["image_size"] or get(model).resolution


def study_cells(cfg: dict, study: str) -> list[tuple[str, str, int, int]]:
    """(model, transform, size index, seed) of one study; full data is i = 0."""
    s = cfg["studies"][study]
    sizes = s.get("size_indices", [0])
    return [(m, t, i, seed) for m in s["models"] for t in s["transforms"] for i in sizes for seed in s["seeds"]]


def cells(cfg: dict) -> list[tuple[str, str, int, int]]:
    """Every distinct training job of the enabled studies (studies share cells)."""
    seen: dict = {}
    for st in STUDIES:
        for c in study_cells(cfg, st):
            seen.setdefault(c, None)
    return list(seen)


def cell_path(run_dir: str, model: str, transform: str, i: int, seed: int, ext: str = "parquet") -> str:
    return f"{run_dir}/imagenet/cells/{model}/{transform}/i{i}/s{seed}.{ext}"


def launcher(cfg: dict, cuda: bool) -> str:
    """What starts a training job: one process on a CPU or a single GPU; torchrun with one
    process per GPU otherwise (srun and a c10d rendezvous across nodes)."""
    gpus, nodes = cfg["gpus"], cfg["nodes"]
    if not cuda or gpus * nodes == 1:
        return "python"
    if nodes == 1:
        return f"torchrun --standalone --nproc-per-node {gpus}"
    return (f"srun --ntasks-per-node 1 torchrun --nnodes {nodes} --nproc-per-node {gpus} --rdzv-backend c10d "
            "--rdzv-id $SLURM_JOB_ID --rdzv-endpoint $(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1):29500")


# Training images/s of one model per family, measured on one NVIDIA H200 (batch 256, 224x224, bf16
# autocast, synthetic batches; calibrations/h200.md) with the library models this code builds:
# torchvision's ResNet-50 in channels_last, timm's EfficientNet-B0 and Mixer-S/16.
H200_RATES = {"resnet": ("resnet50", 4674.0), "efficientnet": ("efficientnet_b0", 1952.0), "mixer": ("mixer_s16", 5726.0)}


def cost_table(cfg: dict, m_full: int = 1_281_167, n_val: int = 50_000, peak_tflops: float = 989.0) -> list[dict]:
    """GPU-hours per study, and for the distinct jobs of all studies (studies share cells), from
    the recipe: per epoch (3 x m_i training images + n_val evaluated) x 2 x forward
    multiply-accumulates, x epochs. At ``peak_tflops`` (an H100 SXM's dense BF16 data-sheet peak)
    it is a floor; the 40% column assumes a utilisation typical of well-fed convnet training.
    ``h200_h_measured``: H200-hours at H200_RATES, the measured rate of the family's reference
    model scaled by forward MACs to the others (an evaluated image costs a third of a trained one)."""
    from synsym.imagenet import models as V

    macs: dict[str, int] = {}

    def mac(model: str) -> int:
        if model not in macs:
            macs[model] = V.forward_macs(V.build(model, 1000), image_size(cfg, model))
        return macs[model]

    def flops(cell: tuple) -> float:
        model, _, i, _ = cell
        return 2.0 * mac(model) * (3 * subset_size(m_full, i) + n_val) * cfg["epochs"]

    def h200_hours(cell: tuple) -> float:
        model, _, i, _ = cell
        ref, rate = H200_RATES[get(model).family]
        return (subset_size(m_full, i) + n_val / 3) * cfg["epochs"] / (rate * mac(ref) / mac(model)) / 3600

    groups = [(st, study_cells(cfg, st)) for st in STUDIES] + [("all (distinct jobs)", cells(cfg))]
    rows = []
    for name, cs in groups:
        total = sum(flops(c) for c in cs)
        hours = total / (peak_tflops * 1e12) / 3600
        rows.append({"study": name, "jobs": len(cs), "pflop": total / 1e15, "gpu_h_at_peak": hours,
                     "gpu_h_at_40pct": hours / 0.4, "h200_h_measured": sum(h200_hours(c) for c in cs)})
    return rows
