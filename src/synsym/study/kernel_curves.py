"""Kernel learning curves to the data's limit (NTK and NNGP, every architecture and transform, both
paddings): where, if anywhere, the paper's GAP_inf > VEC_inf > FCN_inf shows at 8x8.

One kernel per (padding, family, transform) at the largest size a transform asks for; every smaller
size is a set of random training subsets of it, taken as principal sub-matrices (no kernel work), so
a curve's error bar can say how much the choice of images moves an accuracy, beside the binomial
error of the finite test set. Kernels that Theorem 4.1 makes equal to another transform's (FCN under
every grid transform, the conv family under O(3)⊗I_d) are computed once and served to the others;
each such reuse is checked on a block of images every run (study.symmetry.reuse_check).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from synsym.core import architectures as A
from synsym.core import jobspec
from synsym.core import transforms as T
from synsym.core.data import Split
from synsym.core.device import DEVICES
from synsym.core.io import atomic_path
from synsym.core.seeding import rng
from synsym.ntk import kernels, regression
from synsym.study import symmetry

TABLE = "kernel_curves.csv"
COLUMNS = ["padding", "transform", "architecture", "inference", "n_train", "draw", "ridge", "val_acc", "test_acc", "n_test"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def plan_kernels(kc: dict) -> list[tuple[str, str, str, int]]:
    """(padding, family, source transform, training images) of every kernel the study computes: one per
    padding, family and Theorem 4.1 class, at the largest size any transform it serves asks for."""
    out: dict[tuple[str, str, str], int] = {}
    for transform_id, top in kc["transforms"].items():
        for padding in kc["paddings"]:
            for family in A.KERNEL_FAMILIES:
                key = (padding, family, A.kernel_source(family, transform_id))
                out[key] = max(out.get(key, 0), top)
    return [(*k, m) for k, m in out.items()]


def sizes_of(kc: dict, top: int) -> list[int]:
    """The training-set sizes of a transform whose largest is ``top``."""
    return [m for m in kc["sizes"] if m < top] + [top]


def _data(split: Split, transform_id: str, global_seed: int, m: int) -> dict[str, np.ndarray]:
    from synsym.study.cells import transformed

    d = transformed(split, transform_id, global_seed, 0, m)
    return {"train": d["x_train"], "val": d["x_val"], "test": d["x_test"]}


def kernel_dir(out: Path, padding: str, family: str, transform_id: str) -> Path:
    return out / "kernels" / padding / family / transform_id


def compute_kernel(spec: Mapping, split: Split, padding: str, family: str, transform_id: str, m: int, out: Path) -> Path:
    """One (padding, family, transform) kernel over the first m training images, val and test (a shard
    folder as the workflow's kernel jobs write; kept when it exists with at least m training images)."""
    d = kernel_dir(out, padding, family, transform_id)
    if d.exists() and json.loads((d / "rows.json").read_text())["n_train"] >= m:
        return d
    k = spec["kernels"]
    t0 = time.time()
    kernels.compute_shard(family, _data(split, transform_id, spec["global_seed"], m), spec["depth"], k["block_size"],
                          k["max_memory_gb"], 0, 1, d, {"transform": transform_id, "seed": 0, "padding": padding},
                          log=log, engine=k["engine"], device=spec["device"], precision=k["precision"], padding=padding)
    log(f"kernel {padding}/{family}/{transform_id} m={m}: {time.time() - t0:.0f}s")
    return d


def check_reuse(spec: Mapping, split: Split, padding: str, family: str, transform_id: str) -> float:
    """Theorem 4.1 checked on every run (study.symmetry.reuse_check): the kernel of the first training images of
    tau D against the served transform's kernel of the same images, both computed here (NNGP and NTK of every
    readout); the largest relative difference."""
    n = min(symmetry.REUSE_CHECK_IMAGES, len(split.y_train))
    source = A.kernel_source(family, transform_id)
    x = _data(split, transform_id, spec["global_seed"], n)["train"]
    fn = symmetry.family_block_fn({**spec, "padding": padding}, family, x.shape[1], log)
    want = fn(_data(split, source, spec["global_seed"], n)["train"])
    served = {(arch, kind): want[arch][i] for arch in want for i, kind in enumerate(kernels.KINDS)}
    return max(symmetry.reuse_check(fn, x, served, f"{padding}/{family}/{transform_id}", source, log).values())


def subsets(global_seed: int, pool: int, m: int, draws: int) -> list[np.ndarray]:
    """The training images of each draw at size m: the whole pool at the largest size, else ``draws``
    random subsets keyed by (global seed, m, draw), the same for every kernel so curves are paired."""
    if m >= pool:
        return [np.arange(pool)]
    return [np.sort(rng(global_seed, "kernel_curves", m, r).choice(pool, m, replace=False)) for r in range(draws)]


def regress_curve(kern, split: Split, arch: str, kind: str, sizes: list[int], draws: int, ridges: list[float],
                  global_seed: int, device: str) -> list[dict]:
    """Test accuracy of one (architecture, kind) at every size and draw, the ridge picked on validation."""
    key = kernels.kernel_key(arch)
    pool = max(sizes)
    tt = kern.matrix("train_train", key, kind, pool)
    vt, st = kern.matrix("val_train", key, kind, pool), kern.matrix("test_train", key, kind, pool)
    rows = []
    for m in sizes:
        for r, idx in enumerate(subsets(global_seed, pool, m, draws)):
            sub = {f"train_train/{key}/{kind}": tt[np.ix_(idx, idx)], f"val_train/{key}/{kind}": vt[:, idx],
                   f"test_train/{key}/{kind}": st[:, idx]}
            res = regression.regress(sub, arch, kind, split.y_train[idx], split.y_val, split.y_test, ridges, device=device)
            rows.append({"architecture": arch, "inference": kind, "n_train": m, "draw": r, "ridge": res["ridge"],
                         "val_acc": res["val_acc"], "test_acc": res["test_acc"], "n_test": len(split.y_test),
                         "correct": np.argmax(res["test_pred"], 1) == split.y_test})
    return rows


def run(spec: Mapping, split_path: str, out_dir: str) -> Path:
    """Every kernel, reuse check and regression of the study; the table (TABLE) and the reuse checks
    (reuse.json) under ``out_dir``. Kernels already on disk are kept, so a killed run resumes. ``spec`` is the
    job's (core.jobspec: its device resolved); its padding is each of ``kernel_curves.paddings`` in turn."""
    out = Path(out_dir)
    split = Split.load(split_path)
    kc = spec["kernel_curves"]
    for transform_id, top in kc["transforms"].items():
        T.make(transform_id, split.x_train.shape[1], 0, 0)  # an unknown id stops here, with the choices
        if top > len(split.y_train):
            raise ValueError(f"kernel_curves.transforms.{transform_id} = {top} exceeds the split's {len(split.y_train)} "
                             "training images; lower it or raise data.n_train")
    rows, checks, correct = [], {}, {}
    curves: dict[tuple, list[dict]] = {}  # (padding, source, arch, kind, top): a served transform's are its source's
    device = spec["device"]
    where = {(p, f, src): m for p, f, src, m in plan_kernels(kc)}
    for transform_id, top in kc["transforms"].items():
        for padding in kc["paddings"]:
            for family in A.KERNEL_FAMILIES:
                source = A.kernel_source(family, transform_id)
                if source != transform_id:
                    err = check_reuse(spec, split, padding, family, transform_id)
                    checks[f"{padding}/{family}/{transform_id}"] = {"served_by": source, "max_rel_diff": err}
                kern = kernels.load_kernels([compute_kernel(spec, split, padding, family, source,
                                                            where[(padding, family, source)], out)])  # read on demand
                for arch in A.ARCHITECTURES:
                    if A.get(arch).kernel_family != family:
                        continue
                    for kind in kernels.KINDS:
                        key = (padding, source, arch, kind, top)
                        if key not in curves:  # the same kernel and the same subsets give the same regressions
                            curves[key] = regress_curve(kern, split, arch, kind, sizes_of(kc, top), kc["draws"],
                                                        spec["ridges"], spec["global_seed"], device)
                        part = curves[key]
                        for r in part:
                            correct[key_of(padding, transform_id, r)] = r["correct"]
                        rows += [{"padding": padding, "transform": transform_id,
                                  **{k: v for k, v in r.items() if k != "correct"}} for r in part]
                        best = [r for r in part if r["n_train"] == top][0]["test_acc"]
                        log(f"{padding} {transform_id} {arch} {kind}: test_acc at m={top} {best:.4f}")
    import pandas as pd

    df = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(out / TABLE) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(out / "reuse.json") as tmp:
        Path(tmp).write_text(json.dumps(checks, indent=1))
    with atomic_path(out / CORRECT) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **correct)
    return out / TABLE


CORRECT = "kernel_curves_correct.npz"  # per (padding, transform, architecture, inference, size, draw): which test images


def key_of(padding: str, transform_id: str, r: dict) -> str:
    """The key of one regression's test-image correctness vector in CORRECT."""
    return f"{padding}/{transform_id}/{r['architecture']}/{r['inference']}/{r['n_train']}/{r['draw']}"


ORDER = ("gap", "vec", "fcn")  # the paper's NTK ordering on clean data (Sec. 5.3): GAP_inf > VEC_inf > FCN_inf


def summarize(df):
    """Mean and spread of test accuracy per (padding, transform, architecture, inference, n_train): ``sd_draws``
    over the random training subsets, ``se_binom`` = sqrt(p (1 - p) / n_test), the test set's own noise."""
    keys = ["padding", "transform", "architecture", "inference", "n_train"]
    g = df.groupby(keys, sort=False)
    out = g["test_acc"].agg(acc="mean", sd_draws="std", draws="count").reset_index()
    out["sd_draws"] = out["sd_draws"].fillna(0.0)
    n_test = g["n_test"].first().to_numpy()
    out["se_binom"] = np.sqrt(out["acc"] * (1 - out["acc"]) / n_test)
    return out


def ordering(df, inference: str = "ntk", correct: dict | None = None):
    """For each (padding, transform, n_train): the paired gaps GAP - VEC and VEC - FCN (same training subsets,
    same test set) and whether each exceeds twice its noise. The noise of a gap: its draws' standard error
    (sd of the paired differences / sqrt(draws)) in quadrature with the test set's. With ``correct`` (the
    per-image correctness of each regression, CORRECT) the test set's part is paired: the standard error of
    the mean per-image difference of the two classifiers, averaged over draws (the test set is one, so it
    does not shrink with draws); without, the two accuracies' binomial errors added in quadrature, which
    ignores that both classifiers are scored on the same images (much larger)."""
    import pandas as pd

    d = df[df["inference"] == inference]
    piv = d.pivot_table(index=["padding", "transform", "n_train", "draw"], columns="architecture", values="test_acc")
    n_test = int(df["n_test"].iloc[0])
    rows = []
    for (padding, transform, m), part in piv.groupby(level=[0, 1, 2], sort=False):
        row = {"padding": padding, "transform": transform, "n_train": m}
        for hi, lo in zip(ORDER, ORDER[1:]):
            diff = part[hi] - part[lo]
            se_draws = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
            p1, p2 = part[hi].mean(), part[lo].mean()
            if correct is not None:
                draws = part.index.get_level_values(3)
                hits = [[correct[key_of(padding, transform, {"architecture": a, "inference": inference, "n_train": m,
                                                             "draw": d})] for a in (hi, lo)] for d in draws]
                paired = [np.std(h.astype(float) - lo_hit, ddof=1) / np.sqrt(n_test) for h, lo_hit in hits]
                se_test = float(np.mean(paired))
            else:
                se_test = float(np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n_test))
            se = float(np.sqrt(se_draws**2 + se_test**2))
            row[f"{hi}-{lo}"] = float(diff.mean())
            row[f"{hi}-{lo} noise"] = se
            row[f"{hi}>{lo}"] = bool(diff.mean() > 2 * se)
        row["ordered"] = all(row[f"{hi}>{lo}"] for hi, lo in zip(ORDER, ORDER[1:]))
        rows.append(row)
    return pd.DataFrame(rows)


def figure(df, path: str | Path, inference: str = "ntk") -> None:
    """Test accuracy against training-set size, one panel per (padding, transform), one line per architecture:
    bars are the draws' standard deviation, the band the binomial error of the test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # O(3)⊗I_d: every kernel equals the identity's (Theorem 4.1, checked in reuse.json), so its panel would repeat
    s = summarize(df[(df["inference"] == inference) & (df["transform"] != "o3_shared")])
    paddings, transforms = list(dict.fromkeys(s["padding"])), list(dict.fromkeys(s["transform"]))
    fig, axes = plt.subplots(len(paddings), len(transforms), figsize=(3.2 * len(transforms), 3.0 * len(paddings)),
                             sharex=True, sharey=True, squeeze=False)
    for i, padding in enumerate(paddings):
        for j, transform in enumerate(transforms):
            ax = axes[i][j]
            for arch in A.ARCHITECTURES:
                if A.get(arch).kernel_readout or arch == "lap8":  # LCN_inf = VEC_inf; at 8x8 LAP8's one window is GAP's
                    continue
                c = s[(s["padding"] == padding) & (s["transform"] == transform) & (s["architecture"] == arch)]
                if c.empty:
                    continue
                line = ax.errorbar(c.n_train, c.acc, yerr=c.sd_draws, marker="o", ms=3, capsize=2,
                                   label=A.get(arch).label + "$_\\infty$")
                ax.fill_between(c.n_train, c.acc - c.se_binom, c.acc + c.se_binom, color=line[0].get_color(), alpha=0.07)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{transform}, {padding} padding", fontsize=9)
            if i == len(paddings) - 1:
                ax.set_xlabel("training images m")
            if j == 0:
                ax.set_ylabel(f"{inference.upper()} test accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix[1:], dpi=130)
    plt.close(fig)


def markdown(df, inference: str = "ntk", correct: dict | None = None) -> str:
    """Accuracy tables (one per padding and transform: architectures x sizes, mean ± the draws' sd, the
    binomial error in the header) and the ordering verdicts, as Markdown."""
    s = summarize(df[df["inference"] == inference])
    o = ordering(df, inference, correct)
    lines = []
    for (padding, transform), part in s.groupby(["padding", "transform"], sort=False):
        sizes = sorted(set(part["n_train"]))
        se = part.groupby("n_train")["se_binom"].max()
        lines += [f"**{inference.upper()}, {transform}, {padding} padding** (test accuracy %, mean ± sd over the "
                  f"random training subsets; binomial error of the test set at m = {sizes[-1]}: ±{100 * se[sizes[-1]]:.1f})", "",
                  "| architecture | " + " | ".join(f"m = {m}" for m in sizes) + " |", "|---|" + "---|" * len(sizes)]
        for arch in dict.fromkeys(part["architecture"]):
            c = part[part["architecture"] == arch].set_index("n_train")
            lines.append(f"| {A.get(arch).label} | " + " | ".join(
                f"{100 * c.loc[m, 'acc']:.1f} ± {100 * c.loc[m, 'sd_draws']:.1f}" if m in c.index else "" for m in sizes) + " |")
        lines.append("")
    test_noise = ("the paired per-image standard error on the one test set" if correct is not None
                  else "the two accuracies' binomial errors")
    lines += [f"**Ordering GAP > VEC > FCN ({inference.upper()})**: paired gaps in points ± their noise (one sd: the "
              f"draws' standard error and {test_noise}, in quadrature); beyond noise means above 2 sd", "",
              "| padding | transform | m | GAP - VEC | VEC - FCN | GAP > VEC > FCN beyond noise |", "|---|---|---|---|---|---|"]
    for r in o.to_dict("records"):
        lines.append(f"| {r['padding']} | {r['transform']} | {r['n_train']} | {100 * r['gap-vec']:+.1f} ± "
                     f"{100 * r['gap-vec noise']:.1f} | {100 * r['vec-fcn']:+.1f} ± {100 * r['vec-fcn noise']:.1f} | "
                     f"{'yes' if r['ordered'] else 'no'} |")
    return "\n".join(lines) + "\n"


def report(table: str | Path, out_dir: str | Path) -> list[Path]:
    """The figure (kernel_curves.png), the summary tables (kernel_curves_summary.csv, ntk_ordering.csv) and
    their Markdown (kernel_curves.md) of a finished run's table."""
    import pandas as pd

    df = pd.read_csv(table)
    out = Path(out_dir)
    cpath = Path(table).parent / CORRECT
    correct = dict(np.load(cpath)) if cpath.exists() else None
    paths = [out / "kernel_curves.png", out / "kernel_curves_summary.csv", out / "ntk_ordering.csv", out / "kernel_curves.md"]
    figure(df, paths[0])
    for path, frame in ((paths[1], summarize(df)), (paths[2], ordering(df, correct=correct))):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(paths[3]) as tmp:
        Path(tmp).write_text(markdown(df, correct=correct))
    return paths


# The GPU runbook: a slice of presets/one-gpu.yaml's study sized for about 9 minutes on one H100 (32x32,
# identity and O(3)^d, up to 512 training images, 512 test images: two conv kernels of ~0.46 M pairs, ~0.35 ms
# each on an H200 by its calibration), and its CPU smoke form (8x8, depth 2, tens of images) that the tests run.
# Needs no snakemake and no neural-tangents: numpy, scipy, pandas, matplotlib and torch (+ Triton on a GPU).
SLICES = {
    "gpu": {"image_size": 32, "depth": 8, "n_train": 512, "n_val": 128, "n_test": 512, "block_size": 8,
            "kernel_curves": {"paddings": ["circular"], "sizes": [64, 128, 256], "draws": 8,
                              "transforms": {"identity": 512, "o3_shared": 512, "o3_per_pixel": 512}}},
    "smoke": {"image_size": 8, "depth": 2, "n_train": 32, "n_val": 16, "n_test": 32, "block_size": 16,
              "kernel_curves": {"paddings": ["circular", "zero"], "sizes": [8, 16], "draws": 2,
                                "transforms": {"identity": 32, "o3_per_pixel": 16}}},
}


def runbook(argv: list[str] | None = None) -> int:
    """python -m synsym.study.kernel_curves --archive DIR --out DIR [--slice gpu|smoke] [--device cuda|cpu]

    DIR of --archive holds cifar-10-python.tar.gz and its MANIFEST (a copy of the mini archive). Writes the
    split, the kernels, kernel_curves.csv, reuse.json, the figure and the summaries under --out, and the
    run's wall time to runbook.json."""
    import argparse

    from synsym.core.data import download, make_split

    p = argparse.ArgumentParser(prog="python -m synsym.study.kernel_curves")
    p.add_argument("--archive", required=True, help="folder with cifar-10-python.tar.gz and MANIFEST")
    p.add_argument("--out", required=True)
    p.add_argument("--slice", choices=list(SLICES), default="gpu")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: cuda when there is a GPU, else cpu")
    a = p.parse_args(argv)
    import torch

    sl, out = SLICES[a.slice], Path(a.out)
    tar = Path(a.archive) / "cifar-10-python.tar.gz"
    manifest = Path(a.archive) / "MANIFEST"
    if not tar.exists() or not manifest.exists():
        print(f"runbook: {a.archive} lacks cifar-10-python.tar.gz or MANIFEST; allowed: a copy of the mini archive folder",
              file=sys.stderr)
        return 2
    md5 = next(ln.split()[0] for ln in manifest.read_text().splitlines() if ln.strip().endswith("cifar-10-python.tar.gz"))
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    split = make_split(download(tar.resolve().as_uri(), md5, out / "data"), sl["n_train"], sl["n_val"], sl["n_test"], 0,
                       sl["image_size"], 0, False)
    split.save(out / "split.npz")
    # the study's kernel settings (config.yaml's), resolved as a workflow job's are
    spec = jobspec.load({"global_seed": 0, "depth": sl["depth"], "device": a.device, "ridges": [1e-4, 1e-3, 1e-2, 1e-1],
                         "kernels": {"engine": "fast", "precision": "float64", "block_size": sl["block_size"],
                                     "max_memory_gb": 8.0},
                         "kernel_curves": sl["kernel_curves"]}, "kernel-curves")
    device = spec["device"]
    log(f"runbook slice {a.slice} on {device}: {sl['image_size']}x{sl['image_size']}, depth {sl['depth']}, "
        f"{sl['n_train']}/{sl['n_val']}/{sl['n_test']} images")
    report(run(spec, str(out / "split.npz"), str(out)), out)
    wall = time.time() - t0
    (out / "runbook.json").write_text(json.dumps({"slice": a.slice, "device": device, "wall_s": wall,
                                                  "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu"}))
    log(f"runbook done in {wall:.0f}s: {out / TABLE}, {out / 'kernel_curves.png'}, {out / 'ntk_ordering.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(runbook())
