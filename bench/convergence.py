"""Benchmark: how many SGD steps the finite nets need to fit their training set (issue 12).

    python bench/convergence.py                          # the default sweep, then the table and plot
    python bench/convergence.py --archs gap --inferences nn_plus --sizes 256 --width-scales 1 2 --depths 4 8
    python bench/convergence.py --report                 # table + plot from the rows measured so far

For each (architecture, inference, n_train, width, depth) on clean (identity) CIFAR-10 images
at the default image size: the study's own init, eta0 rule (NN: eta0; NN+: 8 eta0 and L2 1e-7),
batch 40, momentum 0.9, and the first evaluated step at which each seed's accuracy on its whole
training set reaches 95% (App. B's acceptance), evaluated every --eval-every steps, up to
--max-steps. Seeds are trained stacked; a seed that reaches 95% leaves the stack (costs nothing).
Rows go to results/bench/convergence.csv (one per seed, appended, so sweeps add up); the report
prints median / min / max steps to fit per configuration and plots steps to fit vs n_train
(log-log, one line per architecture and inference, bars = seed range) to docs/convergence.png.
Unfit seeds count as > max-steps. Timings (s per step for the stack) are this machine's.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

from synsym.core import architectures as A  # noqa: E402
from synsym.core.data import download, make_split, training_subset  # noqa: E402
from synsym.finite import training as TR  # noqa: E402

# Rows go under results/ (a scratch measurement, appended sweep by sweep). The planner's step budgets
# (synsym.pipeline.steps) read a reviewed copy shipped as package data, so an installed package plans
# without this repository; the bench replaces that copy only when asked (--write), never as a side effect.
OUT = ROOT / "results" / "bench" / "convergence.csv"
PACKAGE_ROWS = ROOT / "src" / "synsym" / "pipeline" / "convergence.csv"
FIELDS = ["arch", "inference", "n_train", "width", "depth", "image_size", "seed", "max_steps", "eval_every",
          "fit_step", "stop_step", "diverged", "final_train_acc", "best_train_acc", "eta0", "s_per_step", "seeds_stacked", "wall_s"]


def data(args) -> tuple[np.ndarray, np.ndarray]:
    """The study's preprocessing (class-balanced split, average pooling, standardisation)."""
    mini = Path(args.archive)
    md5 = next(line.split()[0] for line in (mini.parent / "MANIFEST").read_text().splitlines()
               if line.split()[1] == mini.name)
    batches = download(mini.resolve().as_uri(), md5, ROOT / "results" / "bench" / "cifar")
    split = make_split(batches, max(args.sizes), 10, 10, 0, args.image_size, 0, False)
    return split.x_train, split.y_train


def measure(arch: str, inference: str, n: int, width: int, depth: int, x_all, y_all, args,
            drop: bool = True) -> list[dict]:
    spec = A.get(arch, args.padding)
    x, y = training_subset(x_all, y_all, n)
    seeds = args.seeds
    xt = torch.as_tensor(np.stack([x] * len(seeds)), dtype=torch.float32)
    cfg = TR.TrainConfig(max_steps=args.max_steps, eval_every=args.eval_every, batch_size=40, momentum=0.9,
                         eval_batch=1024, stop_train_acc=args.stop_acc, drop_stopped=drop)
    run = TR.setup(spec, width, depth, xt, seeds, inference, cfg)  # the study's init, eta0 (64 images) and batches
    params, eta0 = run.params, run.eta0
    t0 = time.perf_counter()
    res = TR.train(spec, params, {"x_train": xt, "y_train": torch.as_tensor(y)}, depth, run.lr, run.l2, run.batches,
                   cfg, log=lambda s: None)
    wall = time.perf_counter() - t0
    stack_steps = max(1, int(res["steps"].max()))
    rows = []
    for i, s in enumerate(seeds):
        fit = int(res["fit_step"][i])
        # the step at which the seed stopped at --stop-acc (the study's 100%): empty if it never did
        stopped = not res["diverged"][i] and res["train_acc"][i] >= args.stop_acc
        rows.append({"arch": arch, "inference": inference, "n_train": n, "width": width, "depth": depth,
                     "image_size": args.image_size, "seed": s, "max_steps": args.max_steps,
                     "eval_every": args.eval_every, "fit_step": fit if fit > 0 else "",
                     "stop_step": int(res["steps"][i]) if stopped else "", "diverged": bool(res["diverged"][i]),
                     "final_train_acc": float(res["train_acc"][i]), "best_train_acc": float(res["train_best"][i]),
                     "eta0": float(eta0[i]), "s_per_step": wall / stack_steps, "seeds_stacked": len(seeds),
                     "wall_s": wall})
    return rows


def report(path: Path, plot: Path) -> None:
    import pandas as pd

    df = pd.read_csv(path)
    config = ["arch", "inference", "n_train", "width", "depth", "image_size"]
    df = df[df["max_steps"] == df.groupby(config)["max_steps"].transform("max")]  # a rerun with a larger cap wins
    keys = [*config, "max_steps"]
    g = df.groupby(keys)
    if "stop_step" not in df:
        df["stop_step"] = np.nan
    t = g.agg(seeds=("seed", "count"), fit=("fit_step", "count"), median=("fit_step", "median"),
              min=("fit_step", "min"), max=("fit_step", "max"), stopped=("stop_step", "count"),
              stop_max=("stop_step", "max"), best_acc=("best_train_acc", "median"),
              s_per_step=("s_per_step", "median")).reset_index()
    # a configuration where not every seed fit has median/max "> max_steps" unless most did
    t["median"] = [m if f * 2 > s else np.nan for m, f, s in zip(t["median"], t["fit"], t["seeds"])]
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(t.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    # the planner's view (synsym.pipeline.steps): steps to stop at 100% of the slowest seed ~ a n^alpha
    from synsym.pipeline import steps as S

    rows = S.read_rows(path)
    for arch in A.ARCHITECTURES:
        for inf in ("nn", "nn_plus"):
            for col in S.COLUMNS:
                f = S.fit(rows, arch, inf, col)
                if f:
                    print(f"{arch:5s} {inf:8s} {col:9s}: steps = {f.a:.3g} n^{f.alpha:.2f} (se {f.alpha_se:.2f}) on "
                          f"n = {', '.join(map(str, f.sizes))}; seed spread {f.spread:.2f}x"
                          + (f"; never stopped at n = {', '.join(map(str, f.censored))}" if f.censored else ""))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = t[t["depth"] == 8]
    base = base[base["width"] == base["arch"].map(lambda a: DEFAULT_WIDTHS[a])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, inf in zip(axes, ("nn", "nn_plus")):
        for arch in A.ARCHITECTURES:
            a = base[(base["inference"] == inf) & (base["arch"] == arch)].sort_values("n_train")
            ok, color = a[a["fit"] > 0], COLORS[arch]
            mid = ok["median"].fillna(ok["max"])
            ax.errorbar(ok["n_train"], mid, yerr=[mid - ok["min"], ok["max"] - mid], fmt="o-", capsize=3, color=color,
                        label=A.get(arch).label)
            miss = a[a["fit"] < a["seeds"]]
            ax.plot(miss["n_train"], miss["max_steps"], "v", color=color, ms=8, mfc="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n_train")
        ax.set_title(f"{A.INFERENCE_LABELS[inf]}: SGD steps to 95% train accuracy")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("SGD steps to 95% (median, seed range)")
    fig.text(0.5, -0.02, "▽: some seeds had not reached 95% at the step cap (drawn at the cap)", ha="center", fontsize=8)
    fig.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=120, bbox_inches="tight")
    print(f"wrote {plot}")


DEFAULT_WIDTHS: dict[str, int] = {}
COLORS = dict(zip(A.ARCHITECTURES, ["tab:blue", "tab:purple", "tab:red", "tab:orange", "tab:green", "tab:brown"]))


def main() -> None:
    import yaml

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    DEFAULT_WIDTHS.update(cfg["model"]["widths"])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(A.ARCHITECTURES))
    p.add_argument("--inferences", nargs="+", default=["nn", "nn_plus"])
    p.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256, 512])
    p.add_argument("--width-scales", nargs="+", type=float, default=[1.0], help="x the default preset's widths")
    p.add_argument("--depths", nargs="+", type=int, default=[8])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--max-steps", type=int, default=8000)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--stop-acc", type=float, default=1.0,
                   help="a seed stops at this training accuracy (the study's 100%%); fit_step records 95%%")
    p.add_argument("--image-size", type=int, default=cfg["data"]["image_size"])
    p.add_argument("--padding", choices=A.PADDINGS, default=cfg["model"]["padding"], help="model.padding of the nets")
    p.add_argument("--archive", default=str(ROOT.parent / "shared" / "data" / "cifar-10-mini" / "cifar-10-python.tar.gz"))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--plot", default=str(ROOT / "docs" / "convergence.png"))
    p.add_argument("--report", action="store_true", help="only print the table and draw the plot")
    p.add_argument("--write", action="store_true", help=f"then copy --out over the planner's rows ({PACKAGE_ROWS.relative_to(ROOT)})")
    p.add_argument("--compare-drop", action="store_true",
                   help="time each configuration twice, stopped seeds dropped from the stack vs kept (masked)")
    args = p.parse_args()
    out = Path(args.out)
    if args.compare_drop:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        x_all, y_all = data(args)
        for arch in args.archs:
            for inf in args.inferences:
                for n in args.sizes:
                    w = DEFAULT_WIDTHS[arch]
                    kept = measure(arch, inf, n, w, args.depths[0], x_all, y_all, args, drop=False)
                    dropped = measure(arch, inf, n, w, args.depths[0], x_all, y_all, args, drop=True)
                    same = [r["fit_step"] for r in kept] == [r["fit_step"] for r in dropped]
                    print(f"{arch} {inf} n={n}: steps to 95% {[r['fit_step'] for r in dropped]} (same both ways: {same}); "
                          f"wall kept {kept[0]['wall_s']:.1f}s, dropped {dropped[0]['wall_s']:.1f}s, "
                          f"ratio {kept[0]['wall_s'] / dropped[0]['wall_s']:.2f}x", flush=True)
        return
    if not args.report:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        x_all, y_all = data(args)
        out.parent.mkdir(parents=True, exist_ok=True)
        for depth in args.depths:
            for scale in args.width_scales:
                for arch in args.archs:
                    width = max(1, round(DEFAULT_WIDTHS[arch] * scale))
                    for inf in args.inferences:
                        for n in args.sizes:
                            rows = measure(arch, inf, n, width, depth, x_all, y_all, args)
                            new = not out.exists()
                            fields = FIELDS if new else out.read_text().splitlines()[0].split(",")
                            with open(out, "a", newline="") as f:
                                w = csv.DictWriter(f, fields, extrasaction="ignore")
                                if new:
                                    w.writeheader()
                                w.writerows(rows)
                            fits = [r["fit_step"] for r in rows]
                            print(f"{arch:5s} {inf:8s} n={n:5d} w={width:4d} L={depth}: steps to 95% {fits} "
                                  f"({rows[0]['s_per_step'] * 1e3:.1f} ms/step)", flush=True)
    report(out, Path(args.plot))
    if args.write:
        import shutil

        shutil.copyfile(out, PACKAGE_ROWS)
        print(f"copied {out} -> {PACKAGE_ROWS} (the planner's step budgets now fit these rows)", flush=True)


if __name__ == "__main__":
    main()
