# Shared helpers: config validation, ids, paths, per-job specs. All ids come
# from the synsym package (one place defines each); rules stay thin.
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # workflow.basedir: the main Snakefile's folder, the root

from synsym.core import architectures as A
from synsym.core.io import pred_path
from synsym.imagenet import cells as IC
from synsym.imagenet import data as IN
from synsym.imagenet import registry as IR
from synsym.pipeline import jobs as J
from synsym.pipeline import slurm as S
from synsym.pipeline.config import ConfigError, validate
from synsym.study.inputs import FIGURE_TABLES

J.python_first_on_path()  # jobs call `python`: the one running Snakemake, venv activated or not

try:  # --config values arrive as strings: validate types them as a config file would (pipeline.config._coerce)
    validate(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml", cli=workflow.config_settings.config)
except ConfigError as e:
    sys.exit(str(e))

RUN = config["run_name"]
R = J.run_dir(config)
DEPTH = config["model"]["depth"]
CUDA = config["device"] == "cuda"
STUDIES = J.studies(config)

wildcard_constraints:
    **J.WILDCARDS,
    figure="fig[A-Za-z0-9_]+|symmetry_report",


def spec_json(**extra):
    """The config a job depends on, as one JSON string (a params rerun trigger)."""
    d = {"run_name": RUN, "global_seed": config["global_seed"], "depth": DEPTH, "padding": config["model"]["padding"]}
    d.update(extra)
    return json.dumps(d, sort_keys=True)


def planned(rule, fallback_mb):
    """Slurm runtime (min) and mem_mb of a rule's jobs: synsym.pipeline.slurm's request (the cost model's prediction x
    plan.safety_factor) when a calibration covers the job, else plan.fallback_runtime_min and ``fallback_mb``; both
    grow by plan.retry_scale per attempt (the profile's retries)."""

    def get(wildcards, attempt, i):
        fallback = (config["plan"]["fallback_runtime_min"][rule], fallback_mb)
        return S.resources(rule, wildcards, config, attempt, fallback)[i]

    return {
        "runtime": lambda wildcards, attempt: get(wildcards, attempt, 0),
        "mem_mb": lambda wildcards, attempt: get(wildcards, attempt, 1),
    }


def gpu_resources():
    return {"gpu": 1} if CUDA else {}


def train_seeds(study):
    return J.train_seeds(config, study)


def study_cells(study):
    """Cell files of a study (synsym.pipeline.jobs enumerates them; NNGP rides along with NTK; width and
    curve cells that equal a grid cell are the grid's files)."""
    return J.study_paths(config, study)


def kernel_inputs(wc):
    """The kernel shard folders (every shard of every kernel seed) an NTK/NNGP cell regresses on."""
    return J.serving_shards(config, A.get(wc.arch).kernel_family, wc.transform, config["kernel_seeds"])


def held_ridge_cells(wc):
    """A learning curve's smaller sizes hold the ridge its largest size picks: those NTK and NNGP
    cells (synsym.study.cells.kernel_cell); nothing for other studies or the largest size."""
    top = max(config["curves"]["sizes"])
    if wc.study != "curves" or int(wc.m) == top:
        return []
    return [J.cell_path(config, "curves", kind, wc.arch, wc.transform, None, top) for kind in ("ntk", "nngp")]


# Each derived table and the studies it is computed from (any one of them suffices).
DERIVED_FROM = {
    "curves_fits": ["curves"],
    "scaling_fits": ["scaling"],
    "sdist_distances": ["sdist"],
    "symmetry_report": ["grid"],
    "finite_vs_kernel": ["grid"],
    "ridge_wins": ["grid", "curves", "scaling"],
}
DERIVED_TABLES = [t for t, src in DERIVED_FROM.items() if set(src) & set(STUDIES)
                  and (t != "symmetry_report" or J.symmetry_report(config))]
# A figure is drawn when every table it reads is built (config studies, scaling.enabled).
FIGURE_TABLES = {f: ts for f, ts in FIGURE_TABLES.items() if set(ts) <= set(STUDIES + DERIVED_TABLES)}
FIGURES = list(FIGURE_TABLES)
TRANSFORM_FIGURES = ["fig1_transforms", "figS2_so3_path"]  # drawn from the data alone (rule transform_figures)


def all_targets():
    """Every cell file too, so a deleted cell is rebuilt even though its table exists."""
    cells = [c for s in STUDIES for c in study_cells(s)]
    tables = [f"{R}/tables/{s}.parquet" for s in STUDIES + DERIVED_TABLES]
    figs = [f"{R}/figures/{f}.{ext}" for f in FIGURES + TRANSFORM_FIGURES for ext in ("png", "pdf")]
    return cells + tables + figs


# ---- the ImageNet half (workflow/rules/imagenet.smk): only when config imagenet.root is set
IMAGENET = IR.enabled(config)
INC = config["imagenet"]
if IMAGENET:
    try:  # cheap structural checks before any job; the index job checks every file
        IN.check_tree(INC["root"])
    except IN.TreeError as e:
        sys.exit(str(e))


def imagenet_spec():
    """A training job's config; where it reads the images from (shards or the tree: the same bytes) is left out."""
    return spec_json(device=config["device"], imagenet={k: v for k, v in INC.items() if k not in ("shards", "images_per_shard")})


def imagenet_index_spec():
    """What the index depends on: changing epochs or a study must not redo it (and so every cell)."""
    keep = {k: INC[k] for k in ("root", "batch_size")}
    return spec_json(imagenet=keep, size_indices=sorted({i for _, _, i, _ in IC.cells(INC)}))


def imagenet_cells():
    return [IC.cell_path(R, *c) for c in IC.cells(INC)]


def imagenet_targets():
    if not IMAGENET:
        return []
    tables = [f"{R}/imagenet/tables/{t}.{ext}" for t in IR.TABLES for ext in ("parquet", "csv")]
    figs = [f"{R}/figures/{f}.{ext}" for f in [*IR.FIGURES, "figS7_samples"] for ext in ("png", "pdf")]
    return imagenet_cells() + tables + figs


# ---- the kernel curves (workflow/rules/kernel_curves.smk): only when config kernel_curves.enabled
KC = config.get("kernel_curves", {})
KC_DIR = f"{R}/kernel_curves"
KC_OUTPUTS = ["kernel_curves.csv", "reuse.json", "kernel_curves.png", "kernel_curves_summary.csv", "ntk_ordering.csv",
              "kernel_curves.md", "kernel_curves_correct.npz"]


def kernel_curves_targets():
    return [f"{KC_DIR}/{name}" for name in KC_OUTPUTS] if KC.get("enabled", False) else []


def study_targets():
    """What the default target builds: the study (unless kernel_curves.only) and the kernel curves (when enabled)."""
    if KC.get("enabled", False) and KC.get("only", False):
        return kernel_curves_targets()
    return all_targets() + imagenet_targets() + kernel_curves_targets()
