"""Command line entry points, one per workflow rule: ``python -m synsym.cli CMD``.

Every failure a user can cause (bad id, bad config value, md5 mismatch, no
GPU) ends the job with one line on stderr and exit status 2, before compute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Arguments several commands share, by name; a command lists these names, or (flag, options) of its own.
ARGS: dict[str, tuple[str, dict]] = {
    "spec": ("--spec", {"required": True, "help": "the job's config (JSON; the rule's params)"}),
    "split": ("--split", {"required": True, "help": "the split (results/<run>/data/split.npz)"}),
    "out": ("--out", {"required": True}),
    "csv": ("--csv", {"required": True, "help": "the table again, as CSV"}),
    "tables": ("--tables", {"nargs": "+", "required": True}),
    "study": ("--study", {"required": True}),
    "arch": ("--arch", {"required": True}),
    "transform": ("--transform", {"required": True}),
    "index": ("--index", {"required": True, "help": "the index JSON written by `imagenet index`"}),
    "configfile": ("--configfile", {"nargs": "*", "default": [], "help": "presets merged on top of config.yaml, as snakemake does"}),
}


def _parser(sub, name: str, args: tuple, help: str | None = None) -> argparse.ArgumentParser:
    c = sub.add_parser(name, help=help)
    for arg in args:
        flag, opts = ARGS[arg] if isinstance(arg, str) else arg
        c.add_argument(flag, **opts)
    return c


# One row per command: its arguments and what it is for. Each rule's shell line calls one of these.
COMMANDS: dict[str, tuple[tuple, str | None]] = {
    "prepare": (("spec", "out"), "download and check the archive, then write the split"),
    "transform-figures": (("spec", ("--outdir", {"required": True})), "Fig. 1 and Fig. S2: one image under each transform"),
    "kernel": (("spec", ("--family", {"required": True}), "transform", ("--seed", {"type": int, "required": True}),
                ("--shard", {"type": int, "default": 0, "help": "which of kernels.shards.<family> row-block shards"}),
                "split", ("--out", {"required": True, "help": "the shard's folder"})), "one shard of a family's kernels"),
    "kernel-curves": (("spec", "split", ("--outdir", {"required": True, "help": "kernels, tables, reuse.json, the figure"})),
                      "NTK/NNGP learning curves to the data's limit, both paddings (docs/ntk-ordering.md)"),
    "kernel-cell": (("spec", "study", "arch", "transform",
                     ("--m", {"type": int, "nargs": "+", "required": True, "help": "training sizes (sub-matrices of one kernel)"}),
                     "split", ("--kernels", {"nargs": "+", "required": True, "help": "every shard folder of every kernel seed"}),
                     ("--out-ntk", {"nargs": "+", "required": True, "help": "one per --m"}),
                     ("--out-nngp", {"nargs": "+", "required": True, "help": "one per --m"}),
                     ("--hold-ridge-from", {"nargs": "*", "default": [],
                                            "help": "a learning curve's largest-size cells: their ridges are held here"})),
                    "NTK and NNGP regressions of one architecture and transform"),
    "train": (("spec", "study", ("--inference", {"required": True}), "arch", "transform",
               ("--width", {"type": int, "required": True}), ("--m", {"type": int, "required": True}), "split", "out",
               ("--first-layer", {"default": "gaussian"})), "train every seed of one finite cell together"),
    "merge": ((("--out", {"required": True}), ("--csv", {}), ("--cells", {"nargs": "*", "default": []}),
               ("--study", {"help": "label every row with this study (cells shared with the grid carry 'grid')"})),
              "cells into one schema-checked table"),
    "figure": ((("--name", {"required": True}), "tables", ("--out", {"required": True, "help": "the .png; the .pdf beside it"})),
               "one figure from merged tables"),
    "fits": (("tables", "out", "csv"), "power-law exponents and the DIDE half-range slopes"),
    "ridges": (("tables", ("--ridges", {"type": float, "nargs": "+", "required": True, "help": "kernels.ridges"}), "out", "csv"),
               "how often each ridge wins validation (grid, curves, scaling)"),
    "sdist": (("split", ("--preds", {"nargs": "+", "required": True}), "out", "csv"), "S-Dist from stored predictions"),
    "finite-vs-kernel": ((("--grid", {"required": True}), "split", ("--preds", {"nargs": "+", "required": True}), "out", "csv"),
                         "Fig. 2's finite nets against their kernels: paired accuracy differences per cell"),
    "transform-gaps": ((("--runs", {"nargs": "+", "required": True, "help": "results/<run> folders of one split"}),
                        ("--base", {"required": True, "help": "the transform the others are compared with (identity)"}),
                        "out", "csv"),
                       "Sec. 5.3 across runs: each cell's accuracy on a transform minus on the base, paired per image"),
    "symmetry": ((("--grid", {"required": True}), ("--kernels", {"nargs": "+", "required": True}),
                  ("--archs", {"nargs": "+", "required": True}),
                  ("--reused", {"nargs": "*", "default": [], "help": "family/transform kernels served by another job"}),
                  ("--split", {"help": "the split (needed with --reused)"}),
                  ("--spec", {"help": "the kernel spec JSON (needed with --reused)"}), "out", "csv"),
                 "Theorem 4.1's prediction against the measurement, every (architecture, inference, transform)"),
    "plan": (("configfile", ("--device", {"choices": ["cpu", "cuda"], "help": "plan for this device instead of the config's"}),
              ("--calibration", {"help": "calibration JSON (default: results/calibration/<host>-<device>.json)"}),
              ("--calibrate", {"action": "store_true", "help": "measure what the calibration lacks"}),
              ("--jobs", {"help": "write one row per job (TSV): predicted seconds and MB, Slurm request"}),
              ("--compare", {"help": "a run directory (results/<run>): predicted vs measured seconds per rule"})),
             "predict every job's runtime and memory (calibrating this machine once)"),
    "mini-archive": ((("--url", {"help": "the official archive (https://... or file:///abs/path); default: config.yaml's data.url"}),
                      ("--md5", {"help": "its md5; default: config.yaml's data.md5"}),
                      ("--out", {"required": True, "help": "a folder: the mini archive and its MANIFEST"}),
                      ("--download-dir", {"required": True, "help": "where the official archive is kept (data/cifar10)"})),
                     "the tests' mini CIFAR-10: the first images of each official batch, in the official format"),
}
# The ImageNet half's actions (`synsym imagenet ACTION`), each with only the flags it reads.
IMAGENET: dict[str, tuple] = {
    "index": ("spec", "out"),
    "shards": ("spec", "index", "out"),
    "train": ("spec", "index", ("--model", {"required": True}), "transform",
              ("--i", {"type": int, "required": True, "help": "size index: m_i = floor(2^(-i/2) m)"}),
              ("--seed", {"type": int, "required": True}),
              ("--checkpoint", {"required": True, "help": "per-epoch checkpoint (resumed when present)"}),
              ("--shards", {"help": "read images from this folder of tar shards (`imagenet shards`)"}),
              ("--kill-at-step", {"type": int, "help": argparse.SUPPRESS}), "out"),  # test hook: SIGKILL after this step
    "tables": ("spec", ("--cells", {"nargs": "*", "default": []}), ("--out", {"required": True, "help": "a folder"})),
    "figure": ("spec", ("--name", {"required": True}), "tables", "out"),
    "samples": ("spec", "index", "out"),
    "cost": ("configfile",),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="synsym")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, (args, help) in COMMANDS.items():
        _parser(sub, name, args, help)
    inet = sub.add_parser("imagenet", help="the ImageNet half (Sec. 6.2, App. F): index, train, tables, figure, cost")
    actions = inet.add_subparsers(dest="action", required=True)
    for name, args in IMAGENET.items():
        _parser(actions, name, args)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.cmd == "plan":
        return plan_cmd(a)
    from synsym.core.data import DataError

    try:
        if getattr(a, "spec", None) is not None:  # settings resolved once, here, before any work
            from synsym.core import jobspec

            a.spec = jobspec.load(a.spec, a.cmd)
        RUN[a.cmd](a)
    except (ValueError, RuntimeError, DataError, MemoryError, FileNotFoundError) as e:
        print(f"synsym {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


def _wrote(paths) -> None:
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)


def _kernel_curves(a) -> None:
    from synsym.study import kernel_curves

    _wrote(kernel_curves.report(kernel_curves.run(a.spec, a.split, a.outdir), a.outdir))


def _kernel_cell(a) -> None:
    from synsym.study import cells

    if not len(a.m) == len(a.out_ntk) == len(a.out_nngp):
        raise ValueError("kernel-cell: give one --out-ntk and one --out-nngp per --m")
    held = cells.held_ridges(a.hold_ridge_from) if a.hold_ridge_from else None
    cells.kernel_cell(a.spec, a.study, a.arch, a.transform, a.m, a.split, a.kernels, a.spec["seeds"],
                      {"ntk": a.out_ntk, "nngp": a.out_nngp}, held)


def _merge(a) -> None:
    from synsym.core.io import merge_cells

    df = merge_cells(a.cells, a.out, a.csv, a.study)
    print(f"merged {len(a.cells)} cells, {len(df)} rows -> {a.out}", file=sys.stderr)


def _figure(a) -> None:
    from synsym.core.io import read_table
    from synsym.study import figures

    _wrote(figures.make(a.name, {Path(t).stem: read_table(t) for t in a.tables}, Path(a.out).parent))


def _mini_archive(a) -> Path:
    from synsym.core import data

    if not (a.url and a.md5):  # the official archive, as the study's config.yaml names it
        from synsym.pipeline.config import load_config

        official = load_config([])["data"]
        a.url, a.md5 = a.url or official["url"], a.md5 or official["md5"]
    archive, md5 = data.make_mini_archive(data.download(a.url, a.md5, a.download_dir), a.out)
    print(f"mini archive md5 {md5} (also in {Path(a.out) / 'MANIFEST'})", file=sys.stderr)
    return archive


def _cells():
    from synsym.study import cells

    return cells


def plan_cmd(a) -> int:
    """``synsym plan``: the bill of a preset, per rule and in total, from this machine's calibration."""
    from synsym.pipeline import calibration, plan
    from synsym.pipeline.config import SCHEMA, ConfigError, load_config, study_root, validate

    try:
        config = load_config(a.configfile)
        if a.device:
            config["device"] = a.device
        validate(config, study_root(None, a.configfile) / SCHEMA)
        device = "cuda" if config["device"] == "cuda" else "cpu"
        path = Path(a.calibration) if a.calibration else calibration.default_path(device)
        if a.calibration and not a.calibrate and not path.exists():
            raise calibration.PlanError(f"--calibration {path} does not exist; add --calibrate to measure this machine into it")
        if a.calibrate or (not a.calibration and not calibration.up_to_date(config, path)):
            from synsym.core.device import resolve_device

            try:  # a cuda plan needs a GPU here, or a GPU's --calibration file
                resolve_device(config["device"])
            except RuntimeError as e:
                raise calibration.PlanError(f"{e}; or plan with a GPU's calibration: --calibration FILE") from None
            calibration.calibrate(config, path)
        cal = calibration.load(path)
        lacking = calibration.missing(config, cal)
        if lacking:
            raise calibration.PlanError(f"calibration {path} lacks {', '.join(lacking[:3])}{' ...' if len(lacking) > 3 else ''}; "
                                 "run `python -m synsym.cli plan --calibrate` with this config on the target machine")
    except (ConfigError, calibration.PlanError, ValueError, RuntimeError, OSError) as e:
        print(f"synsym plan: error: {e}", file=sys.stderr)
        return 2
    rows = plan.bill(config, cal)
    print(plan.report(config, cal, rows, str(path)))
    if a.jobs:
        import pandas as pd

        pd.DataFrame(rows).to_csv(a.jobs, sep="\t", index=False, float_format="%.4g")
    if a.compare:
        print(plan.compare(rows, plan.measured(a.compare)))
    return 0


def write_table(df, out: str, csv: str) -> None:
    """A derived (non-cell) table, atomically, as Parquet plus CSV."""
    from synsym.core.io import atomic_path

    with atomic_path(out) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    print(f"{len(df)} rows -> {out}", file=sys.stderr)


def _fits(a):
    import pandas as pd

    from synsym.core.io import read_table
    from synsym.study.tables import scaling_fits

    return scaling_fits(pd.concat([read_table(t) for t in a.tables], ignore_index=True))


def _ridges(a):
    from synsym.core.io import read_table
    from synsym.study.tables import ridge_wins

    return ridge_wins({Path(t).stem: read_table(t) for t in a.tables}, a.ridges)


def _sdist(a):
    import numpy as np

    from synsym.core.data import Split
    from synsym.core.io import read_cell, reading
    from synsym.pipeline.jobs import parse_cell
    from synsym.study.tables import sdist_table

    preds, accepted = {}, {}
    for path in a.preds:  # .../cells/sdist/{inference}/{arch}/{so3_path-t{t} | identity}/w{width}_m{m}.pred.npz
        w = parse_cell(path)
        tid = w["transform"]
        t = float(tid.split("-t")[1]) if "-t" in tid else None  # GAP_n, the reference: clean data
        key = (w["arch"], w["inference"], None if w["width"] == "inf" else int(w["width"]), t)
        with reading(path, "predictions file"), np.load(path) as z:
            preds[key], seeds = z["pred"], z["seeds"]
        cell = read_cell(path[: -len(".pred.npz")] + ".parquet").set_index("seed")
        accepted[key] = cell.loc[seeds, "accepted"].to_numpy()
    return sdist_table(preds, Split.load(a.split).y_test, accepted)


def _grid_preds(paths) -> dict:
    """{(inference, arch, transform): (per-seed test predictions, seeds)} of grid cells' .pred.npz files."""
    import numpy as np

    from synsym.core.io import reading
    from synsym.pipeline.jobs import parse_cell

    preds = {}
    for path in paths:  # .../cells/grid/{inference}/{arch}/{transform}/w{width}_m{m}.pred.npz
        w = parse_cell(path)
        with reading(path, "predictions file"), np.load(path) as z:
            preds[(w["inference"], w["arch"], w["transform"])] = (z["pred"], z["seeds"])
    return preds


def _finite_vs_kernel(a):
    from synsym.core.data import Split
    from synsym.core.io import read_table
    from synsym.study.tables import finite_vs_kernel

    return finite_vs_kernel(read_table(a.grid), _grid_preds(a.preds), Split.load(a.split).y_test)


def _transform_gaps(a):
    """Runs of one split, one transform each (the synergy presets): every cell's accuracy against the base's."""
    import numpy as np

    from synsym.core.data import Split
    from synsym.core.io import read_table
    from synsym.study.tables import transform_gaps

    runs, y_test = {}, None
    for run in map(Path, a.runs):
        y = Split.load(run / "data" / "split.npz").y_test
        if y_test is not None and not np.array_equal(y, y_test):
            raise ValueError(f"{run}: its test set is not the other runs'; transform-gaps compares runs of one split")
        y_test = y
        preds = _grid_preds(sorted(str(p) for p in (run / "cells" / "grid").glob("*/*/*/*.pred.npz")))
        for tid in {t for _, _, t in preds}:
            runs[tid] = (read_table(run / "tables" / "grid.parquet"), {k: v for k, v in preds.items() if k[2] == tid})
    if a.base not in runs:
        raise ValueError(f"--base {a.base}: no run has it; the runs have {', '.join(sorted(runs))}")
    return transform_gaps(runs, y_test, a.base)


def _symmetry(a):
    from synsym.pipeline.jobs import parse_kernel_shard
    from synsym.study import symmetry

    files: dict[tuple[str, str], list[str]] = {}  # (family, transform) -> its shard folders
    for k in a.kernels:
        w = parse_kernel_shard(k)
        files.setdefault((w["family"], w["transform"]), []).append(k)
    return symmetry.report(a.grid, files, a.archs, a.reused, a.split, a.spec)


def imagenet_cmd(a) -> None:
    """One ImageNet job (see workflow/rules/imagenet.smk)."""

    import pandas as pd

    from synsym.imagenet import cells as IC
    from synsym.imagenet import data as I
    from synsym.imagenet import registry as IR
    from synsym.imagenet import tables as IT
    from synsym.study import figures

    if a.action == "cost":
        from synsym.pipeline.config import load_config

        cfg = load_config(a.configfile)["imagenet"]
        IR.validate(cfg)
        rows = pd.DataFrame(IC.cost_table(cfg))
        print(rows.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))
        return
    cfg = a.spec["imagenet"]
    if a.action == "index":
        index = I.scan(cfg["root"])
        m = len(index["train"]["files"])
        small = [(i, I.subset_size(m, i)) for i in a.spec["size_indices"] if I.subset_size(m, i) < cfg["batch_size"]]
        if small:
            raise ValueError(f"imagenet: m_{small[0][0]} = {small[0][1]} < batch_size = {cfg['batch_size']} "
                             f"({m} training images); allowed: size indices with m_i >= batch_size")
        IT.write_json(index, a.out)
        print(f"{len(index['classes'])} classes, {m} train / {len(index['val']['files'])} val images", file=sys.stderr)
    elif a.action == "shards":
        index = json.loads(Path(a.index).read_text())
        table = I.write_shards(index, a.out, a.spec["imagenet"]["images_per_shard"])
        print(f"{sum(len(table[s]) for s in ('train', 'val'))} images in "
              f"{len({e[0] for s in ('train', 'val') for e in table[s]})} shards -> {a.out}", file=sys.stderr)
    elif a.action == "train":
        from synsym.imagenet.training import train_cell

        train_cell(a.spec, a.model, a.transform, a.i, a.seed, a.index, a.out, a.checkpoint, a.kill_at_step,
                   a.shards)
    elif a.action == "tables":
        epochs = IT.read_runs(a.cells)
        final = IT.final_table(epochs)
        for name, df in zip(IR.TABLES, (epochs, final, IT.two_segment_fits(final, cfg["cusp_index"]))):
            write_table(df, f"{a.out}/{name}.parquet", f"{a.out}/{name}.csv")
    elif a.action == "samples":
        index = json.loads(Path(a.index).read_text())
        figures.figS7_samples(I.samples(index, cfg, a.spec["global_seed"]), Path(a.out).parent)
    elif a.action == "figure":
        t = {Path(p).stem: pd.read_parquet(p) for p in a.tables}
        st = cfg["studies"]
        out = Path(a.out).parent
        if a.name == "fig5_learning_curves":
            figures.fig5_learning_curves(t["imagenet_final"], t["imagenet_fits"], out, st["fig5_curves"]["models"],
                                         st["fig5_curves"]["transforms"])
        elif a.name == "fig5_rotated_vs_clean":
            figures.fig5_rotated_vs_clean(t["imagenet_final"], out, st["fig5_families"]["models"])
        elif a.name == "figS3_scaling_vs_rotation":
            figures.figS3_scaling_vs_rotation(t["imagenet_final"], t["imagenet_fits"], out,
                                              st["figS3_scaling"]["models"], st["figS3_scaling"]["transforms"])
        elif a.name == "figS4_dynamics":
            figures.figS4_dynamics(t["imagenet_epochs"], out, st["figS4_dynamics"]["models"],
                                   st["figS4_dynamics"]["transforms"])
        else:
            raise ValueError(f"unknown ImageNet figure {a.name!r}; allowed: {', '.join(IR.FIGURES)}")


DERIVED = {"fits": _fits, "ridges": _ridges, "sdist": _sdist, "symmetry": _symmetry, "finite-vs-kernel": _finite_vs_kernel,
           "transform-gaps": _transform_gaps}
# What each command runs (plan: plan_cmd, with its own error handling).
RUN = {
    "prepare": lambda a: _cells().prepare(a.spec, a.out),
    "transform-figures": lambda a: _wrote(_cells().transform_figures(a.spec, a.outdir)),
    "kernel": lambda a: _cells().kernel_job(a.spec, a.family, a.transform, a.seed, a.shard, a.split, a.out),
    "kernel-curves": _kernel_curves,
    "kernel-cell": _kernel_cell,
    "train": lambda a: _cells().train_cell(a.spec, a.study, a.inference, a.arch, a.transform, a.width, a.m, a.split,
                                           a.out, a.first_layer),
    "merge": _merge,
    "figure": _figure,
    **{name: (lambda a, f=f: write_table(f(a), a.out, a.csv)) for name, f in DERIVED.items()},
    "imagenet": imagenet_cmd,
    "mini-archive": lambda a: _wrote([_mini_archive(a)]),
}


if __name__ == "__main__":
    sys.exit(main())
