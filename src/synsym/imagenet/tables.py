"""The ImageNet half's tables: the cell schema (one row per epoch), the final-epoch table and
the two-segment power-law fits of Fig. 5."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from synsym.core.io import atomic_path
from synsym.core.metrics import power_law_fit

SCHEMA = pa.schema([
    ("run", pa.string()), ("model", pa.string()), ("family", pa.string()), ("transform", pa.string()),
    ("size_index", pa.int64()), ("m", pa.int64()), ("seed", pa.int64()), ("epoch", pa.int64()),
    ("epochs", pa.int64()), ("image_size", pa.int64()), ("batch_size", pa.int64()), ("lr", pa.float64()),
    ("train_loss", pa.float64()), ("train_top1", pa.float64()), ("val_loss", pa.float64()),
    ("val_top1", pa.float64()), ("val_top5", pa.float64()), ("images_per_s", pa.float64()),
    ("world_size", pa.int64()), ("device", pa.string()), ("precision", pa.string()), ("code_version", pa.string()),
])


def write_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj))


CELL_COLS = ["model", "family", "transform", "size_index", "m", "seed"]


def read_runs(paths: list[str]) -> pd.DataFrame:
    """Every epoch row of every cell file (SCHEMA)."""
    import pyarrow.parquet as pq

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
