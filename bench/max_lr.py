"""Benchmark: the largest learning rate each architecture trains at, in units of eta0 (issue 21.5).

    python bench/max_lr.py                       # every architecture at the default preset's scale
    python bench/max_lr.py --archs gap --budget 200 --seeds 0
    python bench/max_lr.py --report              # the table from the rows measured so far

The paper sets eta0 = 2 / lambda_max with neural-tangents' ``max_learning_rate`` and says NN+'s
c = 8 is "a factor of 2~4 smaller than the maximal feasible learning rate observed empirically".
Whether momentum entered that call is not stated, so eta0 has two readings:
    momentum: eta0 = 2 (1 + mu) m / lambda_max   (the study's, training.eta0_momentum: true)
    plain:    eta0 = 2 m / lambda_max             (training.eta0_momentum: false)
Both are fixed multiples of the same lambda_max, so one search in absolute learning rate gives
c_max under both: c_max(plain) = (1 + mu) c_max(momentum). Per architecture and seed, at the
default preset's data (n_train, image size), widths, depth, batch, momentum and NN+'s L2, a
bisection in log c over [--c-lo, --c-hi] (momentum reading) finds the largest c that *trains*:
the loss stays finite for --budget SGD steps and the final training MSE is below the MSE at
init. Rows go to docs/max_lr.csv (committed); the report prints per architecture the
median over seeds of c_max under each reading and c_max / 8, the factor by which NN+ sits below it.
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
from synsym.finite import models as M  # noqa: E402
from synsym.finite import training as TR  # noqa: E402
from synsym.finite.recipe import INFERENCE_SETTINGS  # noqa: E402

OUT = ROOT / "docs" / "max_lr.csv"  # committed: docs/measurements.md cites it
FIELDS = ["arch", "width", "depth", "n_train", "image_size", "seed", "budget", "momentum", "lambda_max",
          "eta0_momentum", "eta0_plain", "c_max_momentum", "c_fail_momentum", "c_max_plain", "bisections", "wall_s"]
NN_PLUS_C = INFERENCE_SETTINGS["nn_plus"][0]


def trains(spec, width: int, depth: int, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor, args, cfg: dict
           ) -> np.ndarray:
    """Per seed: does SGD at ``lr`` (one rate per seed) keep a finite loss for the budget and end
    with a lower training MSE than at init? Fresh init each call (same seeds: same init)."""
    params = M.init_params(spec, width, depth, x.shape[2], args.seeds, 0, torch.float32, x.device)
    n = len(y)
    y1h = torch.nn.functional.one_hot(y, A.N_CLASSES).float()

    def loss() -> np.ndarray:
        return ((TR.predict(spec, params, x, depth, 1024) - y1h) ** 2).mean(dim=(1, 2)).numpy()

    before = loss()
    batches = np.stack([TR.batch_indices(0, s, n, cfg["batch_size"], args.budget) for s in args.seeds])
    tc = TR.TrainConfig(max_steps=args.budget, eval_every=args.budget, batch_size=cfg["batch_size"],
                        momentum=cfg["momentum"], eval_batch=1024, stop_train_acc=2.0, drop_stopped=False)
    res = TR.train(spec, params, {"x_train": x, "y_train": y}, depth, lr, INFERENCE_SETTINGS["nn_plus"][1], batches,
                   tc, log=lambda s: None)
    with np.errstate(invalid="ignore"):
        return ~np.asarray(res["diverged"], dtype=bool) & (loss() < before)


def measure(arch: str, x_all: np.ndarray, y_all: np.ndarray, args, cfg: dict) -> list[dict]:
    """Bisect log c per seed (all seeds stacked, each at its own c) and return one row per seed."""
    spec, depth, width = A.get(arch, cfg["model"]["padding"]), cfg["model"]["depth"], cfg["model"]["widths"][arch]
    x, y = training_subset(x_all, y_all, cfg["data"]["n_train"])
    xt = torch.as_tensor(np.stack([x] * len(args.seeds)), dtype=torch.float32)
    yt = torch.as_tensor(y)
    tr = cfg["training"]
    recipe = TR.TrainConfig(max_steps=args.budget, batch_size=tr["batch_size"], momentum=tr["momentum"],
                            eta0_samples=tr["eta0_samples"], eta0_momentum=True)
    run = TR.setup(spec, width, depth, xt, args.seeds, "nn_plus", recipe)  # the study's init and lambda_max
    lam, eta0 = run.lambda_max, run.eta0  # the momentum reading of eta0; plain = this / (1 + mu)
    t0 = time.perf_counter()
    lo, hi = np.full(len(args.seeds), args.c_lo), np.full(len(args.seeds), args.c_hi)
    ok_lo = trains(spec, width, depth, xt, yt, torch.as_tensor(lo, dtype=torch.float32) * eta0, args, tr)
    ok_hi = trains(spec, width, depth, xt, yt, torch.as_tensor(hi, dtype=torch.float32) * eta0, args, tr)
    lo = np.where(ok_lo, lo, np.nan)  # does not train even at c_lo: no bracket
    hi = np.where(ok_hi, np.inf, hi)  # trains even at c_hi: c_max is beyond the range
    steps = 0
    while steps < args.bisections and np.any(np.isfinite(lo) & np.isfinite(hi)):
        c = np.sqrt(np.where(np.isfinite(lo), lo, 1.0) * np.where(np.isfinite(hi), hi, 1.0))
        ok = trains(spec, width, depth, xt, yt, torch.as_tensor(c, dtype=torch.float32) * eta0, args, tr)
        bracketed = np.isfinite(lo) & np.isfinite(hi)
        lo = np.where(bracketed & ok, c, lo)
        hi = np.where(bracketed & ~ok, c, hi)
        steps += 1
    wall = time.perf_counter() - t0
    mu = tr["momentum"]
    return [{"arch": arch, "width": width, "depth": depth, "n_train": len(y), "image_size": x.shape[1], "seed": s,
             "budget": args.budget, "momentum": mu, "lambda_max": float(lam[i]), "eta0_momentum": float(eta0[i]),
             "eta0_plain": float(eta0[i]) / (1 + mu), "c_max_momentum": lo[i], "c_fail_momentum": hi[i],
             "c_max_plain": lo[i] * (1 + mu), "bisections": steps, "wall_s": wall}
            for i, s in enumerate(args.seeds)]


def report(path: Path) -> None:
    import pandas as pd

    df = pd.read_csv(path)
    g = df.groupby(["arch", "width", "n_train", "image_size", "budget"])
    t = g.agg(seeds=("seed", "count"), c_max_momentum=("c_max_momentum", "median"),
              c_fail_momentum=("c_fail_momentum", "median"), c_max_plain=("c_max_plain", "median"),
              spread=("c_max_momentum", lambda v: v.max() / v.min())).reset_index()
    t["below_max_momentum"] = t["c_max_momentum"] / NN_PLUS_C
    t["below_max_plain"] = t["c_max_plain"] / NN_PLUS_C
    with pd.option_context("display.width", 200):
        print(t.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for reading in ("momentum", "plain"):
        f = t[f"below_max_{reading}"]
        inside = int(((f >= 2) & (f <= 4)).sum())
        print(f"{reading} reading: NN+ (c = {NN_PLUS_C:g}) sits {f.min():.2g}-{f.max():.2g}x below the largest c that "
              f"trains; inside the paper's 2-4x for {inside} of {len(f)} architectures")


def main() -> None:
    import yaml

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(A.ARCHITECTURES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=500, help="SGD steps a rate must survive")
    p.add_argument("--c-lo", type=float, default=1.0)
    p.add_argument("--c-hi", type=float, default=256.0)
    p.add_argument("--bisections", type=int, default=8, help="halvings of the log c interval (2^(1/32) at 8 from 1..256)")
    p.add_argument("--archive", default=str(ROOT.parent / "shared" / "data" / "cifar-10-mini" / "cifar-10-python.tar.gz"))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--report", action="store_true", help="only print the table")
    args = p.parse_args()
    out = Path(args.out)
    if not args.report:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        mini = Path(args.archive)
        md5 = next(ln.split()[0] for ln in (mini.parent / "MANIFEST").read_text().splitlines() if ln.split()[1] == mini.name)
        batches = download(mini.resolve().as_uri(), md5, ROOT / "results" / "bench" / "cifar")
        d = cfg["data"]
        split = make_split(batches, d["n_train"], 10, 10, 0, d["image_size"], 0, False)
        out.parent.mkdir(parents=True, exist_ok=True)
        for arch in args.archs:
            rows = measure(arch, split.x_train, split.y_train, args, cfg)
            new = not out.exists()
            with open(out, "a", newline="") as f:
                w = csv.DictWriter(f, FIELDS)
                if new:
                    w.writeheader()
                w.writerows(rows)
            print(f"{arch:5s}: c_max (momentum reading) {[float(round(r['c_max_momentum'], 2)) for r in rows]}, "
                  f"first failing {[float(round(r['c_fail_momentum'], 2)) for r in rows]} ({rows[0]['wall_s']:.0f} s)",
                  flush=True)
    report(out)


if __name__ == "__main__":
    main()
