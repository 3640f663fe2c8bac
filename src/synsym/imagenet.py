"""The ImageNet half of the study (paper Sec. 6.2, App. B.2, App. F): the folder tree,
the subsets m_i, augmentation, the symmetry transform of a batch, the studies' cells
and their cost.

Off unless config ``imagenet.root`` names a local ImageNet in the standard layout
(``train/<class>/*`` and ``val/<class>/*``, one folder per class). A cell is
(model, transform, size index i, seed): model trained on the class-balanced nested
subset of m_i = floor(2^(-i/2) m) training images, every image tau-transformed by the
group element drawn for (global seed, seed) as in the CIFAR half (App. B.3).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from synsym import transforms as T
from synsym.seeding import rng

# torch and synsym.vision are imported where used: this module is read at every DAG build.

IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp")
# Transforms that act on a 224x224x3 tensor; O(3d) would be a 150528^2 dense matrix (180 GB).
TRANSFORMS = ("identity", "o3_shared", "o3_per_pixel", "perm_3d")
# The FLAX example's normalisation (ImageNet channel statistics, RGB, of pixels in [0, 1]).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP_PADDING = 32  # eval: center crop size/(size + 32) of the shorter side, as the FLAX example
# The studies, each a figure (Sec. 6.2 and App. F); figS7_samples needs no training.
STUDIES = ("fig5_curves", "fig5_families", "figS3_scaling", "figS4_dynamics")
# The merged tables (imagenet_tables rule), in the order `imagenet tables` writes them.
TABLES = ("imagenet_epochs", "imagenet_final", "imagenet_fits")
FIGURES = {
    "fig5_learning_curves": ["imagenet_final", "imagenet_fits"],
    "fig5_rotated_vs_clean": ["imagenet_final"],
    "figS3_scaling_vs_rotation": ["imagenet_final", "imagenet_fits"],
    "figS4_dynamics": ["imagenet_epochs"],
}


class TreeError(ValueError):
    """A problem with the ImageNet folder tree (one line)."""


def enabled(config: dict) -> bool:
    return bool(config.get("imagenet", {}).get("root"))


def check_transform(transform_id: str) -> str:
    if transform_id not in TRANSFORMS:
        raise ValueError(f"imagenet: unknown transform {transform_id!r}; allowed: {', '.join(TRANSFORMS)}")
    return transform_id


def _class_dirs(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise TreeError(f"imagenet.root: missing folder {str(split_dir)!r}; allowed: a folder with one subfolder per class")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if not classes:
        raise TreeError(f"imagenet.root: {str(split_dir)!r} has no class folders; allowed: one subfolder per class")
    return classes


def check_tree(root: str | Path) -> list[str]:
    """The cheap checks, at DAG build (seconds even for ImageNet): both splits exist, name the
    same classes, and no class folder is empty. Returns the sorted class names."""
    root = Path(root)
    if not root.is_dir():
        raise TreeError(f"imagenet.root = {str(root)!r} is not a folder; allowed: a folder holding train/ and val/")
    classes = _class_dirs(root / "train")
    val = _class_dirs(root / "val")
    if val != classes:
        diff = sorted(set(classes) ^ set(val))
        raise TreeError(f"imagenet.root: train/ and val/ differ in class folders, e.g. {diff[0]!r}; allowed: the same classes")
    for split in ("train", "val"):
        for c in classes:
            with os.scandir(root / split / c) as it:
                if next(it, None) is None:
                    raise TreeError(f"imagenet.root: empty class folder {str(root / split / c)!r}; allowed: >= 1 image")
    return classes


def scan(root: str | Path) -> dict:
    """The full index (the imagenet_index job): every image of both splits with its label,
    sorted; a non-image file anywhere is one line naming it."""
    root = Path(root)
    classes = check_tree(root)
    index: dict = {"root": str(root.resolve()), "classes": classes}
    for split in ("train", "val"):
        files, labels = [], []
        for label, c in enumerate(classes):
            for name in sorted(os.listdir(root / split / c)):
                if not name.lower().endswith(IMAGE_EXTS):
                    raise TreeError(f"imagenet.root: non-image file {str(root / split / c / name)!r}; "
                                    f"allowed extensions: {', '.join(IMAGE_EXTS)}")
                files.append(f"{split}/{c}/{name}")
                labels.append(label)
        index[split] = {"files": files, "labels": labels}
    return index


def subset_size(m: int, i: int) -> int:
    """m_i = floor(2^(-i/2) m) (Sec. 6.2); exact for even i."""
    return m >> (i // 2) if i % 2 == 0 else math.floor(m * 2.0 ** (-i / 2))


def subset_order(labels: np.ndarray, global_seed: int) -> np.ndarray:
    """An ordering of the training images whose every prefix is class-balanced (synsym.data's
    balanced_order, as the CIFAR split), so the subsets m_0 > m_1 > ... are nested prefixes of
    one list. Keyed by the global seed only: every model, transform and seed sees the same subsets."""
    from synsym.data import balanced_order

    return balanced_order(np.asarray(labels), rng(global_seed, "imagenet-subset"))


# ----------------------------------------------------------------------------- images
def _load(path: str):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def _to_tensor(im):
    import torch

    a = np.asarray(im, dtype=np.float32) / 255.0
    a = (a - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def random_resized_crop(im, size: int, gen: np.random.Generator):
    """Inception-style crop (area 8%-100%, aspect 3/4-4/3, 10 tries, else the center),
    bicubic resize to size x size, then a horizontal flip with probability 1/2."""
    from PIL import Image

    w, h = im.size
    box = None
    for _ in range(10):
        area = w * h * gen.uniform(0.08, 1.0)
        ratio = math.exp(gen.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(gen.integers(0, w - cw + 1)), int(gen.integers(0, h - ch + 1))
            box = (x0, y0, x0 + cw, y0 + ch)
            break
    if box is None:
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    out = im.resize((size, size), Image.BICUBIC, box=box)
    return out.transpose(Image.FLIP_LEFT_RIGHT) if gen.random() < 0.5 else out


def center_crop(im, size: int):
    """Center crop of size/(size+32) of the shorter side, bicubic resize to size x size."""
    from PIL import Image

    w, h = im.size
    s = int(round(size / (size + CROP_PADDING) * min(w, h)))
    x0, y0 = (w - s) // 2, (h - s) // 2
    return im.resize((size, size), Image.BICUBIC, box=(x0, y0, x0 + s, y0 + s))


class FolderDataset:
    """Images of one split from the index, clean (the symmetry transform is applied to the
    batch, on the device). Training crops are keyed by (global seed, seed, epoch, image),
    so they do not depend on DataLoader workers, ranks or a resume."""

    def __init__(self, index: dict, split: str, size: int, train: bool, key: tuple = (), subset=None):
        self.root, self.size, self.train, self.key = index["root"], size, train, key
        files, labels = index[split]["files"], index[split]["labels"]
        sel = range(len(files)) if subset is None else subset
        self.files = [files[i] for i in sel]
        self.labels = [labels[i] for i in sel]
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple:
        im = _load(os.path.join(self.root, self.files[i]))
        if self.train:
            im = random_resized_crop(im, self.size, rng(*self.key, "crop", self.epoch, i))
        else:
            im = center_crop(im, self.size)
        return _to_tensor(im), self.labels[i]


class BatchTransform:
    """One group element tau (synsym.transforms, drawn for (global seed, seed)) applied to an
    (N, 3, H, W) batch on its device: per-pixel 3x3 matrices, or a permutation of the
    flattened HWC vector."""

    def __init__(self, transform_id: str, size: int, global_seed: int, seed: int, device="cpu"):
        import torch

        self.tau = T.make(check_transform(transform_id), size, global_seed, seed)
        self.pixel = None if self.tau.pixel is None else torch.as_tensor(self.tau.pixel, device=device)
        self.perm = None if self.tau.perm is None else torch.as_tensor(self.tau.perm, device=device)

    def __call__(self, x):
        import torch

        if self.pixel is not None:
            return torch.einsum("hwij,njhw->nihw", self.pixel.to(x.dtype), x)
        if self.perm is not None:
            n, c, h, w = x.shape
            flat = x.permute(0, 2, 3, 1).reshape(n, h * w * c)[:, self.perm]
            return flat.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()
        return x


# ----------------------------------------------------------------------------- studies
def image_size(cfg: dict, model: str) -> int:
    """The training resolution: imagenet.image_size, or the model's native one."""
    from synsym import vision as V

    return cfg["image_size"] or V.get(model).resolution


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


def validate(cfg: dict) -> None:
    """Checks the schema cannot express (ids live in synsym.vision and here)."""
    from synsym import vision as V

    for st in STUDIES:
        s = cfg["studies"][st]
        for m in s["models"]:
            try:
                V.get(m)
            except ValueError as e:
                raise ValueError(f"imagenet.studies.{st}.models: {e}") from None
        for t in s["transforms"]:
            try:
                check_transform(t)
            except ValueError as e:
                raise ValueError(f"imagenet.studies.{st}.transforms: {e}") from None
    if cfg["batch_size"] % (cfg["gpus"] * cfg["nodes"]):
        raise ValueError(f"imagenet.batch_size = {cfg['batch_size']} is not divisible by gpus x nodes = "
                         f"{cfg['gpus'] * cfg['nodes']}; allowed: a multiple of it")


# ----------------------------------------------------------------------------- cost
def cost_table(cfg: dict, m_full: int = 1_281_167, n_val: int = 50_000, peak_tflops: float = 989.0) -> list[dict]:
    """GPU-hours per study, and for the distinct jobs of all studies (studies share cells), from
    the recipe: per epoch (3 x m_i training images + n_val evaluated) x 2 x forward
    multiply-accumulates, x epochs. At ``peak_tflops`` (an H100 SXM's dense BF16 data-sheet peak)
    it is a floor; the 40% column assumes a utilisation typical of well-fed convnet training."""
    from synsym import vision as V

    macs: dict[str, int] = {}

    def flops(cell: tuple) -> float:
        model, _, i, _ = cell
        if model not in macs:
            macs[model] = V.forward_macs(V.build(model, 1000), image_size(cfg, model))
        return 2.0 * macs[model] * (3 * subset_size(m_full, i) + n_val) * cfg["epochs"]

    groups = [(st, study_cells(cfg, st)) for st in STUDIES] + [("all (distinct jobs)", cells(cfg))]
    rows = []
    for name, cs in groups:
        total = sum(flops(c) for c in cs)
        hours = total / (peak_tflops * 1e12) / 3600
        rows.append({"study": name, "jobs": len(cs), "pflop": total / 1e15, "gpu_h_at_peak": hours,
                     "gpu_h_at_40pct": hours / 0.4})
    return rows


def write_json(obj, path: str | Path) -> None:
    from synsym.io import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj))


# ----------------------------------------------------------------------------- tables
CELL_COLS = ["model", "family", "transform", "size_index", "m", "seed"]


def read_runs(paths: list[str]) -> pd.DataFrame:
    """Every epoch row of every cell file (the schema of synsym.imagenet_training)."""
    import pyarrow.parquet as pq

    from synsym.imagenet_training import SCHEMA

    frames = []
    for p in paths:
        t = pq.read_table(p)
        if not t.schema.remove_metadata().equals(SCHEMA):
            raise ValueError(f"{p}: schema differs from the ImageNet cell schema")
        frames.append(t.to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else SCHEMA.empty_table().to_pandas()


def final_table(epochs: pd.DataFrame) -> pd.DataFrame:
    """The last epoch of each cell, with top-1 error."""
    last = epochs.sort_values("epoch").groupby(CELL_COLS, as_index=False).tail(1).reset_index(drop=True)
    return last.assign(val_error=1.0 - last["val_top1"])


def two_segment_fits(final: pd.DataFrame, cusp_index: int = 6) -> pd.DataFrame:
    """Power-law slopes of top-1 error vs m on the small-data points (i >= cusp_index) and
    the large-data points (i < cusp_index), per (model, transform), seeds averaged (Fig. 5 left)."""
    from synsym.metrics import power_law_fit

    rows = []
    curves = final.groupby(["model", "transform", "size_index", "m"], as_index=False)["val_error"].mean()
    for (model, t), g in curves.groupby(["model", "transform"]):
        if g["size_index"].nunique() < 2:
            continue
        row = {"model": model, "transform": t, "cusp_index": cusp_index}
        for seg, sel in (("small", g["size_index"] >= cusp_index), ("large", g["size_index"] < cusp_index)):
            alpha, se = power_law_fit(g.loc[sel, "m"].to_numpy(), g.loc[sel, "val_error"].to_numpy())
            row.update({f"alpha_{seg}": alpha, f"alpha_{seg}_se": se, f"points_{seg}": int(sel.sum())})
        rows.append(row)
    cols = ["model", "transform", "cusp_index"] + [c.format(s) for s in ("small", "large")
                                                   for c in ("alpha_{}", "alpha_{}_se", "points_{}")]
    return pd.DataFrame(rows, columns=cols)


def samples(index: dict, cfg: dict, global_seed: int) -> dict[str, np.ndarray]:
    """Figs. S7-S9: the same validation images (one per class, classes drawn by the global seed),
    O(3)^d-rotated with the element of each configured seed, and clean; (N, H, W, 3) in display
    units (the rotation acts on normalised pixels; shown after undoing the normalisation)."""
    s = cfg["samples"]
    labels = np.asarray(index["val"]["labels"])
    classes = rng(global_seed, "imagenet-samples").permutation(int(labels.max()) + 1)[: s["images"]]
    pick = [int(np.flatnonzero(labels == c)[0]) for c in classes]
    size = cfg["image_size"] or 224
    ds = FolderDataset(index, "val", size, False, subset=pick)
    import torch

    x = torch.stack([ds[k][0] for k in range(len(ds))]).double()
    mean, std = torch.tensor(MEAN, dtype=x.dtype)[:, None, None], torch.tensor(STD, dtype=x.dtype)[:, None, None]

    def show(b: torch.Tensor) -> np.ndarray:
        return (b * std + mean).permute(0, 2, 3, 1).numpy()

    rows = {f"{s['transform']}, seed {seed}": show(BatchTransform(s["transform"], size, global_seed, seed)(x))
            for seed in s["seeds"]}
    rows["clean"] = show(x)
    return rows
