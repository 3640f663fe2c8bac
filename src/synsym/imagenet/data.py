"""The ImageNet half's data (paper Sec. 6.2, App. B.2, App. F): the folder tree,
the subsets m_i, augmentation, and the symmetry transform of a batch.

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

from synsym.core import transforms as T
from synsym.core.seeding import rng
from synsym.imagenet.registry import check_transform

# torch and PIL are imported where used.

IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp")
IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp")
# The FLAX example's normalisation (ImageNet channel statistics, RGB, of pixels in [0, 1]).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP_PADDING = 32  # eval: center crop size/(size + 32) of the shorter side, as the FLAX example
class TreeError(ValueError):
    """A problem with the ImageNet folder tree (one line)."""


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
    """An ordering of the training images whose every prefix is class-balanced (synsym.core.data's
    balanced_order, as the CIFAR split), so the subsets m_0 > m_1 > ... are nested prefixes of
    one list. Keyed by the global seed only: every model, transform and seed sees the same subsets."""
    from synsym.core.data import balanced_order

    return balanced_order(np.asarray(labels), rng(global_seed, "imagenet-subset"))


# ----------------------------------------------------------------------------- shards
SHARD_INDEX = "shards.json"


def write_shards(index: dict, out: str | Path, per_shard: int = 1024) -> dict:
    """The image files of both splits packed, unchanged, into uncompressed tar shards of
    ``per_shard`` images (``{split}-{k:05d}.tar``) plus ``shards.json``: per image, in the
    index's order, its shard and the byte range of its data. A cluster file system then serves a
    few thousand large files instead of 1.28 million small ones, and a reader seeks straight to an
    image: the bytes, so the decoded pixels, are the ImageFolder's exactly. Written to a temp
    folder renamed at the end (a killed job leaves no half set).

    The shards are in webdataset's layout (members grouped by key: ``{key}.jpeg`` and ``{key}.cls``,
    the class index as text), so standard tools (webdataset, torchdata) read them too; the byte-range
    table is ours, for keyed random access, and lists only the image members."""
    import io
    import tarfile

    from synsym.core.io import atomic_dir

    root = Path(index["root"])
    table: dict = {"per_shard": per_shard}
    with atomic_dir(out) as tmp:
        for split in ("train", "val"):
            files, labels, entries = index[split]["files"], index[split]["labels"], []
            for k0 in range(0, len(files), per_shard):
                name = f"{split}-{k0 // per_shard:05d}.tar"
                with tarfile.open(tmp / name, "w", format=tarfile.PAX_FORMAT) as tar:
                    for j, rel in enumerate(files[k0 : k0 + per_shard]):
                        key = f"{k0 + j:08d}"
                        tar.add(root / rel, arcname=f"{key}{Path(rel).suffix.lower()}", recursive=False)
                        cls = str(labels[k0 + j]).encode()
                        info = tarfile.TarInfo(f"{key}.cls")
                        info.size = len(cls)
                        tar.addfile(info, io.BytesIO(cls))
                with tarfile.open(tmp / name) as tar:
                    entries += [[name, m.offset_data, m.size] for m in tar.getmembers() if not m.name.endswith(".cls")]
            table[split] = entries
        (tmp / SHARD_INDEX).write_text(json.dumps(table))
    return table


class ShardReader:
    """The bytes of image i of one split, read from its shard by offset (file handles are opened
    per process on first use, so DataLoader workers each get their own)."""

    def __init__(self, shards: str | Path, split: str):
        self.dir = Path(shards)
        path = self.dir / SHARD_INDEX
        if not path.exists():
            raise FileNotFoundError(f"imagenet shards: {path} is missing; allowed: a folder written by write_shards")
        self.entries = json.loads(path.read_text())[split]
        self._files: dict = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}}

    def __call__(self, i: int) -> bytes:
        name, offset, size = self.entries[i]
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = open(self.dir / name, "rb")
        f.seek(offset)
        data = f.read(size)
        if len(data) != size:
            raise OSError(f"imagenet shards: {self.dir / name} is truncated at image {i} (offset {offset})")
        return data


# ----------------------------------------------------------------------------- images
# Two decoders of the same crops: ``pil`` (PIL decode and bicubic resize: the tested reference) and
# ``torchvision`` (torchvision.io's decoder and transforms.v2's bicubic resize on uint8 tensors; batched on
# the GPU, nvjpeg, when the job runs on cuda). Both take their crop box and flip from crop_box, keyed by
# (global seed, seed, epoch, image), so the choice of decoder never changes which pixels an image shows;
# the resamplers differ by a few grey levels (tests/test_imagenet.py bounds it).
DECODERS = ("pil", "torchvision")


def _load(src):
    """An RGB image from a path or a file object."""
    from PIL import Image

    with Image.open(src) as im:
        return im.convert("RGB")


def _normalize(x):
    """(..., 3, H, W) uint8 or float in [0, 255] -> float32, ImageNet's channel statistics removed."""
    import torch

    mean = torch.tensor(MEAN, dtype=torch.float32, device=x.device).reshape(3, 1, 1) * 255
    std = torch.tensor(STD, dtype=torch.float32, device=x.device).reshape(3, 1, 1) * 255
    return (x.float() - mean) / std


def _to_tensor(im):
    import torch

    a = np.asarray(im, dtype=np.float32) / 255.0
    a = (a - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def crop_box(w: int, h: int, size: int, gen: np.random.Generator | None) -> tuple[tuple[int, int, int, int], bool]:
    """(box (x0, y0, x1, y1), flip) of one image of w x h pixels. With a generator: the Inception-style
    training crop (area 8%-100%, aspect 3/4-4/3, 10 tries, else the center) and a horizontal flip with
    probability 1/2; without: the evaluation crop, the center size/(size+32) of the shorter side."""
    if gen is None:
        s = int(round(size / (size + CROP_PADDING) * min(w, h)))
        x0, y0 = (w - s) // 2, (h - s) // 2
        return (x0, y0, x0 + s, y0 + s), False
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
    return box, bool(gen.random() < 0.5)


def random_resized_crop(im, size: int, gen: np.random.Generator):
    """The training crop (crop_box) of a PIL image, bicubic resize to size x size, then the flip."""
    from PIL import Image

    box, flip = crop_box(*im.size, size, gen)
    out = im.resize((size, size), Image.BICUBIC, box=box)
    return out.transpose(Image.FLIP_LEFT_RIGHT) if flip else out


def center_crop(im, size: int):
    """The evaluation crop (crop_box) of a PIL image, bicubic resize to size x size."""
    from PIL import Image

    return im.resize((size, size), Image.BICUBIC, box=crop_box(*im.size, size, None)[0])


def decode(data) -> torch.Tensor:  # noqa: F821
    """(3, H, W) uint8 RGB from an encoded image (bytes or a uint8 tensor) with torchvision.io."""
    import torch
    from torchvision.io import ImageReadMode, decode_image

    t = data if isinstance(data, torch.Tensor) else torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return decode_image(t, mode=ImageReadMode.RGB)


def crop_tensor(img, box: tuple[int, int, int, int], flip: bool, size: int):
    """The crop box of a (3, H, W) uint8 tensor, bicubic-resized (antialiased, as PIL's) to size x size,
    flipped, normalised: transforms.v2 on whatever device the tensor is on."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x0, y0, x1, y1 = box
    out = TF.resized_crop(img, y0, x0, y1 - y0, x1 - x0, [size, size], InterpolationMode.BICUBIC, antialias=True)
    return _normalize(TF.horizontal_flip(out) if flip else out)


def decode_batch(datas: list, boxes: list, flips: list, size: int, device) -> torch.Tensor:  # noqa: F821
    """A batch of encoded JPEGs decoded together (torchvision.io.decode_jpeg: nvjpeg on a cuda device),
    each cropped, resized and flipped on the device: (N, 3, size, size) float32."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    imgs = decode_jpeg(list(datas), mode=ImageReadMode.RGB, device=device)
    return torch.stack([crop_tensor(im, tuple(int(v) for v in b), bool(f), size) for im, b, f in zip(imgs, boxes, flips)])


def collate_raw(items: list) -> tuple:
    """A DataLoader batch of raw items (FolderDataset with raw=True): lists of bytes, boxes and flips, and labels."""
    import torch

    datas, boxes, flips, labels = zip(*items)
    return list(datas), list(boxes), list(flips), torch.as_tensor(labels)


class FolderDataset:
    """Images of one split from the index, clean (the symmetry transform is applied to the
    batch, on the device). Training crops are keyed by (global seed, seed, epoch, image),
    so they do not depend on DataLoader workers, ranks, a resume or the decoder.

    ``decoder``: ``pil`` or ``torchvision`` (DECODERS). ``raw``: items are (encoded bytes as a uint8
    tensor, crop box, flip, label), only the JPEG header read (PIL, for the size), for decode_batch
    on the training device (the GPU decoder)."""

    def __init__(self, index: dict, split: str, size: int, train: bool, key: tuple = (), subset=None,
                 shards: str | Path | None = None, decoder: str = "pil", raw: bool = False):
        if decoder not in DECODERS:
            raise ValueError(f"imagenet.decoder = {decoder!r} is invalid; allowed: {', '.join(DECODERS)}")
        self.root, self.size, self.train, self.key = index["root"], size, train, key
        self.decoder, self.raw = decoder, raw
        files, labels = index[split]["files"], index[split]["labels"]
        sel = range(len(files)) if subset is None else subset
        self.ids = [int(i) for i in sel]
        self.files = [files[i] for i in sel]
        self.labels = [labels[i] for i in sel]
        self.reader = ShardReader(shards, split) if shards else None  # else the ImageFolder's files
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.files)

    def _bytes(self, i: int) -> bytes:
        if self.reader:
            return self.reader(self.ids[i])
        with open(os.path.join(self.root, self.files[i]), "rb") as f:
            return f.read()

    def __getitem__(self, i: int) -> tuple:
        import io

        gen = rng(*self.key, "crop", self.epoch, i) if self.train else None
        data = self._bytes(i)
        if self.decoder == "pil" and not self.raw:
            im = _load(io.BytesIO(data))
            im = random_resized_crop(im, self.size, gen) if self.train else center_crop(im, self.size)
            return _to_tensor(im), self.labels[i]
        if self.raw:
            import torch
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:  # the header only: the size the crop box needs
                w, h = im.size
            box, flip = crop_box(w, h, self.size, gen)
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), box, flip, self.labels[i]
        img = decode(data)
        box, flip = crop_box(img.shape[2], img.shape[1], self.size, gen)
        return crop_tensor(img, box, flip, self.size), self.labels[i]


class BatchTransform:
    """One group element tau (synsym.core.transforms, drawn for (global seed, seed)) applied to an
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
