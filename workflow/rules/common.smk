# Shared helpers: config validation, ids, paths, per-job specs. All ids come
# from the synsym package (one place defines each); rules stay thin.
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from synsym import architectures as A
from synsym import transforms as T
from synsym.config import ConfigError, validate
from synsym.io import pred_path

try:
    validate(config)
except ConfigError as e:
    sys.exit(str(e))

RUN = config["run_name"]
R = f"results/{RUN}"
N_TRAIN = config["data"]["n_train"]
DEPTH = config["model"]["depth"]
WIDTHS = config["model"]["widths"]
CUDA = config["device"] == "cuda"
STUDIES = ["grid", "width", "curves", "uniform_init", "sdist"] + (["scaling"] if config["scaling"]["enabled"] else [])

wildcard_constraints:
    study="[a-z_0-9]+",
    arch="|".join(A.ARCHITECTURES),
    family="|".join(A.KERNEL_FAMILIES),
    finite="|".join(A.FINITE_INFERENCES),
    transform="[a-z0-9_.-]+",
    width=r"\d+",
    m=r"\d+",
    seed=r"\d+",
    figure="fig[A-Za-z0-9_]+|symmetry_report",


def spec_json(**extra):
    """The config a job depends on, as one JSON string (a params rerun trigger)."""
    d = {"run_name": RUN, "global_seed": config["global_seed"], "depth": DEPTH}
    d.update(extra)
    return json.dumps(d, sort_keys=True)


def gpu_resources():
    return {"gpu": 1} if CUDA else {}


def cell_path(study, inference, arch, transform, width, m):
    w = "inf" if inference in A.KERNEL_INFERENCES else width
    return f"{R}/cells/{study}/{inference}/{arch}/{transform}/w{w}_m{m}.parquet"


def cell(*key):
    return key


def grid_cells():
    g = config["grid"]
    return [
        cell("grid", inf, a, t, WIDTHS[a], N_TRAIN)
        for inf in g["inferences"]
        for a in g["architectures"]
        for t in g["transforms"]
    ]


def width_cells():
    w = config["width_sweep"]
    return [
        cell("width", inf, w["architecture"], t, width, N_TRAIN)
        for inf in w["inferences"]
        for t in w["transforms"]
        for width in w["widths"]
    ]


def curve_sizes(inference):
    c = config["curves"]
    sizes = list(c["sizes"])
    # Flipped images (Fig. 4's 90k point) only for SGD: the kernel covers n_train.
    if c["flip"] and inference in A.FINITE_INFERENCES:
        sizes.append(2 * N_TRAIN)
    return sizes


def curve_cells():
    return [
        cell("curves", c["inference"], c["architecture"], c["transform"], WIDTHS[c["architecture"]], m)
        for c in config["curves"]["cells"]
        for m in curve_sizes(c["inference"])
    ]


def scaling_cells():
    """Fig. S6: NTK (and NNGP) of every architecture x transform over the curve sizes."""
    g = config["grid"]
    return [
        cell("scaling", "ntk", a, t, None, m)
        for a in g["architectures"]
        for t in g["transforms"]
        for m in config["curves"]["sizes"]
    ]


def uniform_cells():
    """Fig. S5: a variance-matched uniform first layer, identity data."""
    u = config["uniform_init"]
    return [cell("uniform_init", u["inference"], a, "identity", WIDTHS[a], N_TRAIN) for a in u["architectures"]]


def sdist_cells():
    """Fig. S1: VEC_n and GAP_n (NN+) and VEC_inf (NTK) on tau_t D along the SO(3)^d path."""
    sd = config["sdist"]
    out = []
    for t in sd["ts"]:
        tid = T.path_id(t)
        out.append(cell("sdist", "ntk", "vec", tid, None, N_TRAIN))
        for w in sd["widths"]:
            out += [cell("sdist", "nn_plus", a, tid, w, N_TRAIN) for a in ("vec", "gap")]
    return out


STUDY_CELLS = {
    "grid": grid_cells,
    "width": width_cells,
    "curves": curve_cells,
    "scaling": scaling_cells,
    "uniform_init": uniform_cells,
    "sdist": sdist_cells,
}


def train_seeds(study):
    return config["sdist"]["seeds"] if study == "sdist" else config["seeds"]


def study_cells(study):
    """Cell files of a study; NNGP cells ride along with NTK cells (same job, same kernels)."""
    keys = STUDY_CELLS[study]()
    keys += [(k[0], "nngp", *k[2:]) for k in keys if k[1] == "ntk"]
    return [cell_path(*k) for k in keys]


def kernel_inputs(wc):
    """The kernel files (one per kernel seed) an NTK/NNGP cell regresses on."""
    fam = A.get(wc.arch).kernel_family
    return [f"{R}/kernels/{fam}/{wc.transform}/s{s}.npz" for s in config["kernel_seeds"]]


# Each figure and the tables it is drawn from.
FIGURE_TABLES = {
    "fig2_grid": ["grid"],
    "fig3_width": ["width", "grid"],
    "fig4_learning_curves": ["curves", "curves_fits"],
    "figS1_sdist": ["sdist_distances"],
    "figS5_uniform_init": ["grid", "uniform_init"],
    "figS6_scaling": ["scaling", "scaling_fits"],
    "symmetry_report": ["symmetry_report"],
}
DERIVED_TABLES = ["curves_fits", "scaling_fits", "sdist_distances", "symmetry_report"]
if not config["scaling"]["enabled"]:
    del FIGURE_TABLES["figS6_scaling"]
    DERIVED_TABLES.remove("scaling_fits")
FIGURES = list(FIGURE_TABLES)


def all_targets():
    """Every cell file too, so a deleted cell is rebuilt even though its table exists."""
    cells = [c for s in STUDIES for c in study_cells(s)]
    tables = [f"{R}/tables/{s}.parquet" for s in STUDIES + DERIVED_TABLES]
    figs = [f"{R}/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    return cells + tables + figs
