"""Command line entry points, one per workflow rule: ``python -m synsym.cli CMD``.

Every failure a user can cause (bad id, bad config value, md5 mismatch, no
GPU) ends the job with one line on stderr and exit status 2, before compute.
"""

from __future__ import annotations

import argparse
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
              ("--shards", {"help": "read images from this folder of tar shards (`imagenet shards`)"}), "out"),
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
        from synsym.pipeline import plan

        return plan.main(a.configfile, a.device, a.calibration, a.calibrate, a.jobs, a.compare)
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


def _write_table(df, out: str, csv: str) -> None:
    from synsym.core.io import write_table

    write_table(df, out, csv)


def _config():
    from synsym.pipeline import config

    return config


def _cells():
    from synsym.study import cells

    return cells


def imagenet_cmd(a) -> None:
    """One ImageNet job (see workflow/rules/imagenet.smk)."""
    if a.action == "cost":
        from synsym.pipeline import plan

        print(plan.imagenet_cost(a.configfile))
        return
    from synsym.study import imagenet_jobs as IJ

    if a.action == "train":
        IJ.train(a.spec, a.model, a.transform, a.i, a.seed, a.index, a.out, a.checkpoint, a.shards)
    elif a.action == "figure":
        _wrote(IJ.figure(a.spec, a.name, a.tables, a.out))
    else:
        {"index": lambda: IJ.index(a.spec, a.out), "shards": lambda: IJ.shards(a.spec, a.index, a.out),
         "tables": lambda: IJ.tables(a.spec, a.cells, a.out), "samples": lambda: IJ.samples(a.spec, a.index, a.out)}[a.action]()


def _derived(a):
    """The table of a derived-table command (pipeline.derived), from its arguments."""
    from synsym.pipeline import derived as D

    return {"fits": lambda: D.fits(a.tables), "ridges": lambda: D.ridges(a.tables, a.ridges),
            "sdist": lambda: D.sdist(a.split, a.preds), "finite-vs-kernel": lambda: D.finite_vs_kernel(a.grid, a.split, a.preds),
            "transform-gaps": lambda: D.transform_gaps(a.runs, a.base),
            "symmetry": lambda: D.symmetry(a.grid, a.kernels, a.archs, a.reused, a.split, a.spec)}[a.cmd]()


DERIVED = ("fits", "ridges", "sdist", "symmetry", "finite-vs-kernel", "transform-gaps")
# What each command runs (plan: pipeline.plan.main, with its own error handling).
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
    **{name: lambda a: _write_table(_derived(a), a.out, a.csv) for name in DERIVED},
    "imagenet": imagenet_cmd,
    "mini-archive": lambda a: _wrote([_config().mini_archive(a.url, a.md5, a.out, a.download_dir)]),
}


if __name__ == "__main__":
    sys.exit(main())
