"""Benchmark: the ImageNet loader's work per image, PIL against torchvision.io, side by side on the same JPEGs.

    python bench/loader.py                        # CPU, one thread: images/s per core of each path
    python bench/loader.py --device cuda          # adds the batched nvjpeg decode + crops on the GPU

The JPEGs are real photographs at ImageNet's typical size: mini CIFAR-10 images upscaled (bicubic) to
500x375 and saved at quality 90 (random noise would be a decoder's worst case, not its typical one).
Each path does what a DataLoader worker does per training image: decode, the keyed Inception crop, resize to
224, flip, normalise (synsym.imagenet.data). Rates are per core (torch and PIL on one thread), so a node's
loader rate is about this times its worker processes.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np

MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-mini" / "cifar-10-python.tar.gz"


def jpegs(n: int = 64, archive: Path = MINI) -> list[bytes]:
    """n JPEGs of 500x375 made from the first n training images of the mini archive."""
    import tarfile

    from PIL import Image

    from synsym.core.data import BATCH_DIR, load_batch

    with tarfile.open(archive) as tar, tempfile_dir() as d:
        tar.extract(f"{BATCH_DIR}/data_batch_1", d, filter="data")
        x, _ = load_batch(Path(d) / BATCH_DIR / "data_batch_1")
    out = []
    for im in x[:n]:
        buf = io.BytesIO()
        Image.fromarray(im).resize((500, 375), Image.BICUBIC).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def tempfile_dir():
    import tempfile

    return tempfile.TemporaryDirectory()


def rate(fn, items: list, repeat: int = 3) -> float:
    """Items per second of fn over items, best of ``repeat`` passes (after one warm-up pass)."""
    fn(items[:4])
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(items)
        best = min(best, time.perf_counter() - t0)
    return len(items) / best


def cpu_rates(data: list[bytes], size: int = 224) -> dict[str, float]:
    """images/s on one core: decode only, and decode + crop + resize + flip + normalise, for each decoder."""
    import torch
    from PIL import Image

    from synsym.imagenet import data as D

    torch.set_num_threads(1)

    def pil_decode(items):
        for b in items:
            with Image.open(io.BytesIO(b)) as im:
                im.convert("RGB").load()

    def pil_full(items):
        for k, b in enumerate(items):
            with Image.open(io.BytesIO(b)) as im:
                D._to_tensor(D.random_resized_crop(im.convert("RGB"), size, np.random.default_rng(k)))

    def tv_decode(items):
        for b in items:
            D.decode(b)

    def tv_full(items):
        for k, b in enumerate(items):
            img = D.decode(b)
            box, flip = D.crop_box(img.shape[2], img.shape[1], size, np.random.default_rng(k))
            D.crop_tensor(img, box, flip, size)

    return {"PIL decode": rate(pil_decode, data), "torchvision.io decode": rate(tv_decode, data),
            "PIL decode + crop 224": rate(pil_full, data), "torchvision decode + v2 crop 224": rate(tv_full, data)}


def gpu_rate(data: list[bytes], device: str, batch: int = 256, size: int = 224) -> float:
    """images/s of the GPU path: a batch of raw JPEGs decoded together (nvjpeg) and cropped on the device."""
    import torch

    from synsym.imagenet import data as D

    raw = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in (data * (batch // len(data) + 1))[:batch]]
    boxes = [D.crop_box(500, 375, size, np.random.default_rng(k)) for k in range(batch)]

    def run(items):
        D.decode_batch(items, [b for b, _ in boxes[: len(items)]], [f for _, f in boxes[: len(items)]], size, device)
        torch.cuda.synchronize()

    return rate(run, raw)


def main() -> None:
    import os

    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    data = jpegs(a.images)
    print(f"{len(data)} JPEGs of 500x375 (mean {np.mean([len(b) for b in data]) / 1024:.0f} KiB); "
          f"one thread on a machine of {os.cpu_count()} cores")
    r = cpu_rates(data)
    for what, v in r.items():
        print(f"  {what:34s} {v:7.0f} images/s per core")
    print(f"  torchvision / PIL (decode + crop): {r['torchvision decode + v2 crop 224'] / r['PIL decode + crop 224']:.2f}x")
    if a.device != "cpu":
        print(f"  batched decode + crops on {a.device}: {gpu_rate(data, a.device):.0f} images/s")


if __name__ == "__main__":
    main()
