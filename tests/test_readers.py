"""Every reader of a study file names the file when it cannot use it: one line with the path, what is wrong
and what to do (in a grid of hundreds of cells nobody should have to search for the broken one)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import kernel_args

from synsym.core.data import Split
from synsym.core.io import REMAKE, StudyFileError, read_cell, read_table, write_cell
from synsym.ntk import kernels as K


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def one_line_naming(e, path):
    msg = str(e.value)
    assert str(path) in msg and REMAKE.split(";")[0] in msg and "\n" not in msg, msg


@pytest.fixture
def cell(tmp_path):
    from synsym.core.io import CELL_SCHEMA

    row = {f.name: None for f in CELL_SCHEMA}
    row.update(run="t", study="grid", inference="ntk", architecture="vec", transform="identity", seed=0, n_train=4,
               test_acc=0.5, accepted=True, status="ok")
    path = tmp_path / "cells" / "w_m4.parquet"
    write_cell([row], path)
    return path


def test_cell_truncated_and_of_another_schema(cell, tmp_path):
    truncate(cell)
    with pytest.raises(StudyFileError) as e:
        read_cell(cell)
    one_line_naming(e, cell)
    other = tmp_path / "old.parquet"
    pd.DataFrame({"test_acc": [0.5], "seed": ["0"]}).to_parquet(other)
    with pytest.raises(StudyFileError, match="written with another cell schema") as e:
        read_cell(other)
    one_line_naming(e, other)


def test_merge_cli_names_the_truncated_cell(cell, tmp_path):
    truncate(cell)
    p = subprocess.run([sys.executable, "-m", "synsym.cli", "merge", "--cells", str(cell), "--out", str(tmp_path / "m.parquet")],
                       capture_output=True, text=True, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and str(cell) in lines[0], p.stderr


def test_split_truncated_and_wrong_keys(tmp_path):
    s = Split(*(np.zeros((2, 8, 8, 3)) if i % 2 == 0 else np.zeros(2, dtype=np.int64) for i in range(6)))
    path = tmp_path / "split.npz"
    s.save(path)
    truncate(path)
    with pytest.raises(StudyFileError) as e:
        Split.load(path)
    one_line_naming(e, path)
    np.savez(path, x_train=np.zeros(2))
    with pytest.raises(StudyFileError) as e:
        Split.load(path)
    one_line_naming(e, path)


@pytest.fixture
def shard(tmp_path):
    x = np.random.default_rng(0).standard_normal((6, 4, 4, 3))
    d = tmp_path / "kernels" / "shard0"
    K.compute_shard("fcn", {"train": x[:4], "val": x[4:5], "test": x[5:]}, 1, 4, 1.0, 0, 1, d,
                    {"transform": "identity", "seed": 0}, **kernel_args())
    return d


def test_kernel_shard_index_stripe_and_shape(shard):
    K.load_kernels([shard]).matrix("train_train", "fcn", "ntk")  # intact: reads
    npy = shard / "fcn__ntk.npy"
    good = npy.read_bytes()
    truncate(npy, 0.3)
    with pytest.raises(StudyFileError) as e:
        K.load_kernels([shard]).matrix("train_train", "fcn", "ntk")
    one_line_naming(e, npy)
    np.save(npy, np.zeros((2, 3)))  # a stripe of the wrong shape
    with pytest.raises(StudyFileError, match="kernel shard of shape") as e:
        K.load_kernels([shard]).matrix("train_train", "fcn", "ntk")
    assert str(npy) in str(e.value)
    npy.write_bytes(good)
    rows = shard / "rows.json"
    truncate(rows)
    with pytest.raises(StudyFileError) as e:
        K.load_kernels([shard])
    one_line_naming(e, rows)
    rows.write_text(json.dumps({"shard": 0, "shards": 1}))  # an older layout without its rows
    with pytest.raises(StudyFileError) as e:
        K.load_kernels([shard])
    one_line_naming(e, rows)


def test_tables_and_held_ridges(cell, tmp_path):
    from synsym.study.cells import held_ridges

    table = tmp_path / "grid.parquet"
    pd.DataFrame({"a": [1.0] * 100}).to_parquet(table)
    truncate(table)
    with pytest.raises(StudyFileError) as e:
        read_table(table)
    one_line_naming(e, table)
    truncate(cell)
    with pytest.raises(StudyFileError) as e:
        held_ridges([str(cell)])
    one_line_naming(e, cell)


def test_sdist_predictions(tmp_path):
    from synsym.pipeline import derived

    path = tmp_path / "cells" / "sdist" / "nn_plus" / "vec" / "so3_path-t0.5" / "w24_m192.pred.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, pred=np.zeros((2, 5, 10)), seeds=np.arange(2))
    truncate(path)
    with pytest.raises(StudyFileError) as e:
        derived.sdist(str(tmp_path / "split.npz"), [str(path)])
    one_line_naming(e, path)
