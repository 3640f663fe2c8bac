"""Which cells and jobs a config implies: the one enumeration that the Snakemake rules
(workflow/rules/common.smk) and the cost planner (synsym.pipeline.cost and plan) both read.

A cell key is (study, inference, architecture, transform, width, n_train); width
is None for the infinite-width (kernel) inferences.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from synsym.core import architectures as A
from synsym.core import transforms as T

CellKey = tuple


def python_first_on_path() -> None:
    """Put the directory of the Python running Snakemake first on PATH, so that jobs' ``python``
    is the one with synsym installed also when a user calls .venv/bin/snakemake without
    activating the venv; with --sdm conda the env's python is still put before it."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir, path])


def run_dir(config: dict) -> str:
    return f"results/{config['run_name']}"


# One kernel job's output: a folder of .npy stripes (synsym.ntk.kernels.compute_shard).
KERNEL_SHARD = "{run_dir}/kernels/{family}/{transform}/s{seed}/shard{shard}"


# The command lines of the compute rules (``python -m synsym.cli`` + these), in one place: the rules' shell
# lines fill the fields with Snakemake placeholders (cli_line), the planner's calibration with real values.
CLI = {
    "kernel": "kernel --spec {spec} --family {family} --transform {transform} --seed {seed} --shard {shard} "
              "--split {split} --out {out}",
    "kernel_cell": "kernel-cell --spec {spec} --study {study} --arch {arch} --transform {transform} --m {m} "
                   "--split {split} --kernels {kernels} --out-ntk {out_ntk} --out-nngp {out_nngp}",
    "train_cell": "train --spec {spec} --study {study} --inference {inference} --arch {arch} --transform {transform} "
                  "--width {width} --m {m} --split {split} --first-layer {first_layer} --out {out}",
}


def cli_line(rule: str, **fields: str) -> str:
    """One compute rule's ``synsym.cli`` arguments (CLI) with its fields filled in."""
    return CLI[rule].format(**fields)


def kernel_shards(config: dict, family: str, transform: str, seeds: list[int]) -> list[str]:
    """Every shard folder of one family's kernel, for each kernel seed."""
    return [KERNEL_SHARD.format(run_dir=run_dir(config), family=family, transform=transform, seed=s, shard=k)
            for s in seeds for k in range(config["kernels"]["shards"][family])]


def kernel_transform(config: dict, family: str, transform: str) -> str:
    """The transform whose kernel job serves ``family`` on ``transform``: with ``kernels.reuse_invariant``
    one job per Theorem 4.1 invariance class (A.kernel_source; the symmetry report checks each reuse on a
    sampled block), else the transform's own."""
    if config["kernels"].get("reuse_invariant", True):
        return A.kernel_source(family, transform)
    return transform


def serving_shards(config: dict, family: str, transform: str, seeds: list[int]) -> list[str]:
    """The shard folders whose kernel an NTK/NNGP cell on ``transform`` regresses on (kernel_transform)."""
    return kernel_shards(config, family, kernel_transform(config, family, transform), seeds)


def reused_kernels(config: dict) -> list[str]:
    """``family/transform`` of every grid kernel served by another transform's job (kernel_transform)."""
    return [f"{f}/{t}" for f in A.KERNEL_FAMILIES for t in config["grid"]["transforms"]
            if kernel_transform(config, f, t) != t]


def studies(config: dict) -> list[str]:
    """The CIFAR-10 studies the DAG builds: config ``studies`` (a preset may run one figure alone), and
    Fig. S6's scaling cells when ``scaling.enabled``."""
    return list(config["studies"]) + (["scaling"] if config["scaling"]["enabled"] else [])


def symmetry_report(config: dict) -> bool:
    """Whether the run has a Theorem 4.1 report: the grid is built and holds the clean data, the reference, and
    another transform to compare with it."""
    t = config["grid"]["transforms"]
    return "grid" in config["studies"] and "identity" in t and len(t) > 1


# One cell's files under the run directory: its row (CELL_TABLE) and test predictions (CELL_PREDS), and its job's
# log under logs/. Kernel cells have width "inf". The rules, cell_path and parse_cell all read this one template.
CELL = "cells/{study}/{inference}/{arch}/{transform}/w{width}_m{m}"
CELL_TABLE, CELL_PREDS = ".parquet", ".pred.npz"


def _fill(template: str, **fields) -> str:
    """``template`` with the given fields filled in and the others left as ``{field}`` (Snakemake wildcards)."""
    return re.sub(r"\{(\w+)\}", lambda f: str(fields[f[1]]) if f[1] in fields else f[0], template)


def cell_file(run: str, ext: str, **fields) -> str:
    """A cell's file (``ext``: CELL_TABLE, CELL_PREDS or ".log" for its log under logs/), the fields not given
    left as wildcards: the rules' outputs and logs, and cell_path."""
    return f"{run}/{'logs/' if ext == '.log' else ''}{_fill(CELL, **fields)}{ext}"


def scaling_files(run: str, kind: str, sizes: list[int], ext: str) -> list[str]:
    """One Fig. S6 job's files of one kind (rule scaling_cells: every size of one architecture and transform)."""
    return [cell_file(run, ext, study="scaling", inference=kind, width="inf", m=m) for m in sizes]


def cell_path(config: dict, study: str, inference: str, arch: str, transform: str, width, m: int) -> str:
    w = "inf" if inference in A.KERNEL_INFERENCES else width
    return cell_file(run_dir(config), CELL_TABLE, study=study, inference=inference, arch=arch, transform=transform,
                     width=w, m=m)


def grid_cells(config: dict) -> list[CellKey]:
    g, widths, n = config["grid"], config["model"]["widths"], config["data"]["n_train"]
    return [("grid", inf, a, t, widths[a], n) for inf in g["inferences"] for a in g["architectures"] for t in g["transforms"]]


def width_cells(config: dict) -> list[CellKey]:
    w, n = config["width_sweep"], config["data"]["n_train"]
    return [("width", inf, w["architecture"], t, width, n)
            for inf in w["inferences"] for t in w["transforms"] for width in w["widths"]]


def curve_sizes(config: dict, inference: str) -> list[int]:
    c = config["curves"]
    sizes = list(c["sizes"])
    # Flipped images (Fig. 4's 90k point) only for SGD: the kernel covers n_train.
    if c["flip"] and inference in A.FINITE_INFERENCES:
        sizes.append(2 * config["data"]["n_train"])
    return sizes


def curve_cells(config: dict) -> list[CellKey]:
    widths = config["model"]["widths"]
    return [("curves", c["inference"], c["architecture"], c["transform"], widths[c["architecture"]], m)
            for c in config["curves"]["cells"] for m in curve_sizes(config, c["inference"])]


def scaling_cells(config: dict) -> list[CellKey]:
    """Fig. S6: NTK (and NNGP) of every architecture x transform over the curve sizes."""
    g = config["grid"]
    return [("scaling", "ntk", a, t, None, m)
            for a in g["architectures"] for t in g["transforms"] for m in config["curves"]["sizes"]]


def uniform_cells(config: dict) -> list[CellKey]:
    """Fig. S5: a variance-matched uniform first layer, identity data."""
    u, widths, n = config["uniform_init"], config["model"]["widths"], config["data"]["n_train"]
    return [("uniform_init", u["inference"], a, "identity", widths[a], n) for a in u["architectures"]]


def sdist_cells(config: dict) -> list[CellKey]:
    """Fig. S1 (App. E): VEC_n (NN+) and VEC_inf (NTK) on tau_t D along the SO(3)^d path, and the
    reference GAP_n (NN+) on the clean data, once per width: S-Dist(VEC_n^{tau_t}, GAP_n)."""
    sd, n = config["sdist"], config["data"]["n_train"]
    out = []
    for t in sd["ts"]:
        tid = T.path_id(t)
        out.append(("sdist", "ntk", "vec", tid, None, n))
        out += [("sdist", "nn_plus", "vec", tid, w, n) for w in sd["widths"]]
    return out + [("sdist", "nn_plus", "gap", "identity", w, n) for w in sd["widths"]]


STUDY_CELLS = {
    "grid": grid_cells,
    "width": width_cells,
    "curves": curve_cells,
    "scaling": scaling_cells,
    "uniform_init": uniform_cells,
    "sdist": sdist_cells,
}


def train_seeds(config: dict, study: str) -> list[int]:
    return config["sdist"]["seeds"] if study == "sdist" else config["seeds"]


def study_keys(config: dict, study: str) -> list[CellKey]:
    """Cell keys of a study; NNGP cells ride along with NTK cells (same job, same kernels)."""
    keys = STUDY_CELLS[study](config)
    return keys + [(k[0], "nngp", *k[2:]) for k in keys if k[1] == "ntk"]


# Studies whose finite cells are computed exactly as the grid's: same seeds (config seeds), same
# Gaussian init, and randomness keyed by (global seed, seed, ids) without the study's name.
SHARES_GRID = ("width", "curves")


def owner(config: dict, key: CellKey) -> CellKey:
    """The key whose job computes this cell: a width-sweep or learning-curve cell that is a grid
    cell (same inference, architecture, transform, width and n_train) is read from the grid's
    file, since training it again would reproduce it bit for bit (only the study label differs,
    and the merge writes the study's own). Kernel cells take seconds and keep their own jobs."""
    study, inf, *rest = key
    if study in SHARES_GRID and inf in A.FINITE_INFERENCES:
        grid = ("grid", inf, *rest)
        if grid in grid_cells(config):
            return grid
    return key


def study_paths(config: dict, study: str) -> list[str]:
    """The cell files a study's table is merged from (shared grid cells included)."""
    return [cell_path(config, *owner(config, k)) for k in study_keys(config, study)]


@dataclass(frozen=True)
class Job:
    """One job of the DAG: its rule and the wildcards (or parameters) that size it."""

    rule: str
    wildcards: dict = field(hash=False)

    @property
    def name(self) -> str:
        return f"{self.rule}[" + ",".join(f"{k}={v}" for k, v in self.wildcards.items()) + "]"


def jobs(config: dict) -> list[Job]:
    """Every compute job of the whole study (merges, fits and figures run locally and are left out)."""
    kc = config.get("kernel_curves", {})
    if kc.get("enabled", False) and kc.get("only", False):
        return [Job("prepare", {}), Job("kernel_curves", {})]
    out = [Job("prepare", {})] + ([Job("kernel_curves", {})] if kc.get("enabled", False) else [])
    kernels: dict[tuple[str, str], None] = {}
    for study in studies(config):
        for key in STUDY_CELLS[study](config):
            st, inf, arch, t, width, m = key
            if inf in A.FINITE_INFERENCES:
                if owner(config, key) != key:
                    continue  # the grid's job computes it
                out.append(Job("train_cell", {"study": st, "finite": inf, "arch": arch, "transform": t,
                                              "width": str(width), "m": str(m)}))
                continue
            family = A.get(arch).kernel_family
            kernels[(family, kernel_transform(config, family, t))] = None
            if study != "scaling":
                out.append(Job("kernel_cell", {"study": st, "arch": arch, "transform": t, "m": str(m)}))
        if study == "scaling":
            g = config["grid"]
            out += [Job("scaling_cells", {"arch": a, "transform": t}) for a in g["architectures"] for t in g["transforms"]]
    if symmetry_report(config):  # it compares every family's kernels across the grid's transforms
        kernels.update({(f, kernel_transform(config, f, t)): None for f in A.KERNEL_FAMILIES for t in config["grid"]["transforms"]})
    out += [Job("kernel", {"family": f, "transform": t, "seed": str(s), "shard": str(k)})
            for f, t in kernels for s in config["kernel_seeds"] for k in range(config["kernels"]["shards"][f])]
    return out


# What each wildcard may match: the workflow's global wildcard_constraints (common.smk) and the
# benchmark parser below read these, so a path means one job to both.
WILDCARDS = {
    "study": "[a-z_0-9]+",
    "arch": "|".join(A.ARCHITECTURES),
    "family": "|".join(A.KERNEL_FAMILIES),
    "finite": "|".join(A.FINITE_INFERENCES),
    "transform": "[a-z0-9_.-]+",
    "width": r"\d+",
    "m": r"\d+",
    "seed": r"\d+",
    "shard": r"\d+",
    "i": r"\d+",
    "model": "[a-z0-9_]+",
}
# Each rule's benchmark file under the run directory: the rules' ``benchmark:`` directives are
# built from these (benchmark()), and measured() reads them back (parse_benchmark()).
BENCHMARKS = {
    "prepare": "benchmarks/prepare.tsv",
    "kernel": "benchmarks/kernel/{family}/{transform}/s{seed}/shard{shard}.tsv",
    "kernel_cell": "benchmarks/cells/{study}/ntk/{arch}/{transform}/winf_m{m}.tsv",
    "scaling_cells": "benchmarks/cells/scaling/{arch}/{transform}.tsv",
    "train_cell": "benchmarks/cells/{study}/{finite}/{arch}/{transform}/w{width}_m{m}.tsv",
    "imagenet_train": "benchmarks/imagenet/{model}/{transform}/i{i}/s{seed}.tsv",
    "imagenet_shards": "benchmarks/imagenet/shards.tsv",
    "kernel_curves": "benchmarks/kernel_curves.tsv",
}


def benchmark(run_dir: str, rule: str) -> str:
    """A rule's benchmark pattern under ``run_dir``, with Snakemake's {wildcards}."""
    return f"{run_dir}/{BENCHMARKS[rule]}"


def _pattern(template: str, wildcards: dict = WILDCARDS) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)
    rx = "".join(re.escape(p) if k % 2 == 0 else f"(?P<{p}>{wildcards[p]})" for k, p in enumerate(parts))
    return re.compile(rx)


_PATTERNS = {rule: _pattern(t) for rule, t in BENCHMARKS.items()}
# The tails of a cell's files (cell_path; its predictions beside it) and of a kernel shard (KERNEL_SHARD).
_CELL = _pattern(CELL + "{ext}",
                 {**WILDCARDS, "inference": "|".join((*A.INFERENCES, "nngp")), "width": r"\d+|inf",
                  "ext": r"\.parquet|\.pred\.npz"})
_SHARD = _pattern(KERNEL_SHARD.removeprefix("{run_dir}/"))
_EXPECTED = {"cell": f"{CELL}{CELL_TABLE} (or {CELL_PREDS})",
             "kernel shard": KERNEL_SHARD.removeprefix("{run_dir}/")}


def _tail(rx: re.Pattern, path: str | Path, what: str) -> dict[str, str]:
    for k in range(len(Path(path).parts)):
        m = rx.fullmatch(Path(*Path(path).parts[k:]).as_posix())
        if m:
            return m.groupdict()
    raise ValueError(f"{path}: not a {what} path; expected .../{_EXPECTED[what]}")


def parse_cell(path: str | Path) -> dict[str, str]:
    """The wildcards of a cell's file or its predictions (study, inference, arch, transform, width: 'inf' for
    kernel cells, m, ext), read back from the path cell_path writes."""
    return _tail(_CELL, path, "cell")


def parse_kernel_shard(path: str | Path) -> dict[str, str]:
    """The wildcards of a kernel shard folder (family, transform, seed, shard), as KERNEL_SHARD writes it."""
    return _tail(_SHARD, path, "kernel shard")


def parse_benchmark(path: str | Path, run_dir: str | Path) -> Job | None:
    """The job whose benchmark file ``path`` is (a path under ``run_dir``), or None for a file no
    rule writes. Each pattern's wildcards keep their constraints, so a kernel cell's
    ``.../ntk/.../winf_m*`` is never read as a training cell."""
    rel = Path(path).relative_to(run_dir).as_posix()
    for rule, rx in _PATTERNS.items():
        m = rx.fullmatch(rel)
        if m:
            return Job(rule, m.groupdict())
    return None


def read_benchmarks(run_dir: str | Path) -> dict[Job, tuple[float, float]]:
    """(seconds, peak RSS in MB; NaN where Snakemake could not measure it) of every job with a
    benchmark file under ``run_dir``, keyed by its Job; the last row counts (a rerun appends)."""
    out = {}
    for tsv in sorted((Path(run_dir) / "benchmarks").rglob("*.tsv")):
        job = parse_benchmark(tsv, run_dir)
        if job is None:
            continue
        lines = tsv.read_text().splitlines()
        cols, vals = lines[0].split("\t"), lines[-1].split("\t")
        row = dict(zip(cols, vals))
        rss = row.get("max_rss", "NA")
        out[job] = (float(row["s"]), float(rss) if rss not in ("NA", "-") else float("nan"))
    return out
