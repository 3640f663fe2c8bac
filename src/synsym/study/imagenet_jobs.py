"""The ImageNet half's jobs (workflow/rules/imagenet.smk), one function each, called by ``synsym imagenet ACTION``:
the index and its shards, a training cell, the merged tables, the sample figure and the figures."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from synsym.core.io import write_table
from synsym.imagenet import data as I
from synsym.imagenet import registry as IR
from synsym.imagenet import tables as IT
from synsym.study import figures


def index(spec: Mapping, out: str) -> None:
    """Scan the tree once; refuse size indices whose subset is smaller than one batch."""
    cfg = spec["imagenet"]
    idx = I.scan(cfg["root"])
    m = len(idx["train"]["files"])
    small = [(i, I.subset_size(m, i)) for i in spec["size_indices"] if I.subset_size(m, i) < cfg["batch_size"]]
    if small:
        raise ValueError(f"imagenet: m_{small[0][0]} = {small[0][1]} < batch_size = {cfg['batch_size']} "
                         f"({m} training images); allowed: size indices with m_i >= batch_size")
    IT.write_json(idx, out)
    print(f"{len(idx['classes'])} classes, {m} train / {len(idx['val']['files'])} val images", file=sys.stderr)


def shards(spec: Mapping, index_path: str, out: str) -> None:
    table = I.write_shards(json.loads(Path(index_path).read_text()), out, spec["imagenet"]["images_per_shard"])
    print(f"{sum(len(table[s]) for s in ('train', 'val'))} images in "
          f"{len({e[0] for s in ('train', 'val') for e in table[s]})} shards -> {out}", file=sys.stderr)


def train(spec: Mapping, model: str, transform: str, i: int, seed: int, index_path: str, out: str, checkpoint: str,
          shard_dir: str | None) -> None:
    from synsym.imagenet.training import train_cell

    train_cell(spec, model, transform, i, seed, index_path, out, checkpoint, shard_dir)


def tables(spec: Mapping, cells: list[str], out: str) -> None:
    """Per-epoch rows of every cell, the final table and the two-segment fits (IR.TABLES), under ``out``."""
    epochs = IT.read_runs(cells)
    final = IT.final_table(epochs)
    for name, df in zip(IR.TABLES, (epochs, final, IT.two_segment_fits(final, spec["imagenet"]["cusp_index"]))):
        write_table(df, f"{out}/{name}.parquet", f"{out}/{name}.csv")


def samples(spec: Mapping, index_path: str, out: str) -> None:
    idx = json.loads(Path(index_path).read_text())
    figures.figS7_samples(I.samples(idx, spec["imagenet"], spec["global_seed"]), Path(out).parent)


def figure(spec: Mapping, name: str, table_paths: list[str], out: str) -> list[str]:
    return figures.make(name, {Path(p).stem: pd.read_parquet(p) for p in table_paths}, Path(out).parent, spec["imagenet"])
