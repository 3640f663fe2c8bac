"""Results on disk: atomic writes, the one cell-table schema, cell paths."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REMAKE = "delete it and rerun; snakemake will remake it"


class StudyFileError(ValueError):
    """A study file that cannot be used: one line naming the file, what is wrong and what to do."""


@contextlib.contextmanager
def reading(path: str | Path, what: str) -> Iterator[None]:
    """Turn any failure while reading ``path`` (a ``what``: cell, split, kernel shard, table, ...) into one
    StudyFileError line that names the file: in a grid of hundreds of cells the user must not have to search."""
    try:
        yield
    except StudyFileError:
        raise
    except Exception as e:  # truncated Parquet, a zip without its members, bad JSON, missing keys, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise StudyFileError(f"{path}: cannot read this {what} ({type(e).__name__}: {msg[:200]}); {REMAKE}") from None


def read_table(path: str | Path, what: str = "table") -> pd.DataFrame:
    """A Parquet table of the study (merged tables, fits), failing with one line that names the file."""
    with reading(path, what):
        return pd.read_parquet(path)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temp path beside ``path``; rename it into place only on success.

    A killed job leaves at most a hidden ``.tmp-*`` file, never a file with
    the final name, so Snakemake sees the output as missing and reruns it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; it becomes ``path`` (replacing an older one) only on
    success, so a killed job leaves at most a hidden ``.tmp-*`` folder."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-"))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# One row per seed of a cell. Kernel cells leave training-only columns null.
CELL_SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("study", pa.string()),
        ("inference", pa.string()),
        ("architecture", pa.string()),
        ("transform", pa.string()),
        ("width", pa.int64()),  # null for infinite width
        ("depth", pa.int64()),
        ("n_train", pa.int64()),
        ("n_val", pa.int64()),
        ("n_test", pa.int64()),
        ("image_size", pa.int64()),
        ("seed", pa.int64()),
        ("lr", pa.float64()),
        ("l2", pa.float64()),
        ("steps", pa.int64()),
        ("train_acc", pa.float64()),
        ("val_acc", pa.float64()),
        ("test_acc", pa.float64()),
        ("test_acc_best", pa.float64()),
        ("test_mse", pa.float64()),
        ("accepted", pa.bool_()),
        ("wall_s", pa.float64()),
        ("device", pa.string()),
        ("code_version", pa.string()),
        ("eta0", pa.float64()),
        ("lambda_max", pa.float64()),
        ("ridge", pa.float64()),  # kernel cells: the ridge used (x trace/n); on a curve, the one picked at m_max
        ("ridgeless", pa.bool_()),  # kernel cells: that ridge is the ridgeless limit (ntk.regression.RIDGELESS)
        ("ridge_repick", pa.float64()),  # curve/scaling kernel cells: the ridge validation picks at this m ...
        ("test_acc_repick", pa.float64()),  # ... and its test accuracy and MSE (what re-picking per size gives)
        ("test_mse_repick", pa.float64()),
        ("status", pa.string()),
        ("init", pa.string()),
    ]
)


def pred_path(cell_path: str) -> str:
    """Where a cell's per-seed test predictions live: beside the cell, ``.pred.npz``."""
    return cell_path[: -len(".parquet")] + ".pred.npz"


def write_cell(rows: list[dict], path: str | Path) -> None:
    """Validate rows against CELL_SCHEMA and write them atomically as Parquet."""
    missing = [c for c in CELL_SCHEMA.names if any(c not in r for r in rows)]
    if missing:
        raise ValueError(f"cell rows for {path} lack columns: {', '.join(missing)}")
    table = pa.Table.from_pylist([{c: r[c] for c in CELL_SCHEMA.names} for r in rows], schema=CELL_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_cell(path: str | Path) -> pd.DataFrame:
    """Read one cell file, refusing one whose schema is not CELL_SCHEMA (a cell of an older code version)."""
    with reading(path, "cell"):
        schema = pq.read_schema(path)
    if not schema.remove_metadata().equals(CELL_SCHEMA):
        want = {f.name: str(f.type) for f in CELL_SCHEMA}
        got = {f.name: str(f.type) for f in schema}
        diff = sorted(set(want.items()) ^ set(got.items()))
        raise StudyFileError(f"{path}: written with another cell schema ({len(diff)} columns differ, e.g. "
                             f"{', '.join(f'{n}: {t}' for n, t in diff[:3])}); {REMAKE}")
    with reading(path, "cell"):
        return pq.read_table(path).to_pandas()


def merge_cells(
    paths: list[str], out_parquet: str | Path, out_csv: str | Path | None = None, study: str | None = None
) -> pd.DataFrame:
    """Concatenate cell files into one table (and a CSV summary for terminals).

    ``study`` relabels every row: a study that shares cells with the grid reads the grid's files."""
    df = pd.concat([read_cell(p) for p in paths], ignore_index=True) if paths else pd.DataFrame(
        {f.name: pd.Series(dtype=f.type.to_pandas_dtype()) for f in CELL_SCHEMA}
    )
    if study is not None:
        df["study"] = study
    table = pa.Table.from_pandas(df, schema=CELL_SCHEMA, preserve_index=False)
    with atomic_path(out_parquet) as tmp:
        pq.write_table(table, tmp)
    if out_csv is not None:
        keys = ["study", "inference", "architecture", "transform", "width", "n_train"]
        summary = (
            df.assign(width=df["width"].fillna(-1))
            .groupby(keys, dropna=False)
            .agg(
                seeds=("seed", "count"),
                accepted=("accepted", "sum"),
                test_acc=("test_acc", "mean"),
                test_acc_best=("test_acc_best", "mean"),
                test_mse=("test_mse", "mean"),
            )
            .reset_index()
        )
        summary["width"] = summary["width"].replace(-1, pd.NA)
        with atomic_path(out_csv) as tmp:
            summary.to_csv(tmp, index=False, float_format="%.4f")
    return df


def code_version() -> str:
    """The package version plus the git commit when run from a checkout."""
    from synsym import __version__

    try:
        import subprocess

        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def write_table(df: pd.DataFrame, out: str | Path, csv: str | Path) -> None:
    """A derived (non-cell) table, atomically, as Parquet plus CSV."""
    import sys

    with atomic_path(out) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    print(f"{len(df)} rows -> {out}", file=sys.stderr)
