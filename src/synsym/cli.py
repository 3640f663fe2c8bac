"""Command line entry points, one per workflow rule: ``python -m synsym.cli CMD``.

Every failure a user can cause (bad id, bad config value, md5 mismatch, no
GPU) ends the job with one line on stderr and exit status 2, before compute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _spec(s: str) -> dict:
    return json.loads(s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="synsym")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("prepare")
    c.add_argument("--spec", type=_spec, required=True)
    c.add_argument("--out", required=True)

    c = sub.add_parser("kernel")
    c.add_argument("--spec", type=_spec, required=True)
    c.add_argument("--family", required=True)
    c.add_argument("--transform", required=True)
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--split", required=True)
    c.add_argument("--out", required=True)

    c = sub.add_parser("kernel-cell")
    c.add_argument("--spec", type=_spec, required=True)
    c.add_argument("--study", required=True)
    c.add_argument("--arch", required=True)
    c.add_argument("--transform", required=True)
    c.add_argument("--m", type=int, nargs="+", required=True, help="training sizes (sub-matrices of one kernel)")
    c.add_argument("--split", required=True)
    c.add_argument("--kernels", nargs="+", required=True)
    c.add_argument("--out-ntk", nargs="+", required=True, help="one per --m")
    c.add_argument("--out-nngp", nargs="+", required=True, help="one per --m")

    c = sub.add_parser("train")
    c.add_argument("--spec", type=_spec, required=True)
    c.add_argument("--study", required=True)
    c.add_argument("--inference", required=True)
    c.add_argument("--arch", required=True)
    c.add_argument("--transform", required=True)
    c.add_argument("--width", type=int, required=True)
    c.add_argument("--m", type=int, required=True)
    c.add_argument("--split", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--first-layer", default="gaussian")

    c = sub.add_parser("merge")
    c.add_argument("--out", required=True)
    c.add_argument("--csv")
    c.add_argument("--cells", nargs="*", default=[])

    c = sub.add_parser("figure")
    c.add_argument("--name", required=True)
    c.add_argument("--tables", nargs="+", required=True)
    c.add_argument("--out", required=True, help="the .png path; the .pdf goes beside it")

    c = sub.add_parser("fits")
    c.add_argument("--tables", nargs="+", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--csv", required=True)

    c = sub.add_parser("sdist")
    c.add_argument("--split", required=True)
    c.add_argument("--preds", nargs="+", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--csv", required=True)

    c = sub.add_parser("symmetry")
    c.add_argument("--grid", required=True)
    c.add_argument("--kernels", nargs="+", required=True)
    c.add_argument("--archs", nargs="+", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--csv", required=True)

    c = sub.add_parser("plan", help="predict every job's runtime and memory (calibrating this machine once)")
    c.add_argument("--configfile", nargs="*", default=[], help="presets merged on top of config.yaml, as snakemake does")
    c.add_argument("--device", choices=["cpu", "cuda"], help="plan for this device instead of the config's")
    c.add_argument("--calibration", help="calibration JSON to use (default: results/calibration/<host>-<device>.json)")
    c.add_argument("--calibrate", action="store_true", help="measure what the calibration lacks (default when it is this machine's)")
    c.add_argument("--jobs", help="write one row per job (TSV): predicted seconds and MB, Slurm request")
    c.add_argument("--compare", help="a run directory (results/<run>): predicted vs measured seconds per rule")

    a = p.parse_args(argv)
    if a.cmd == "plan":
        return plan_cmd(a)
    from synsym import cells
    from synsym.data import DataError

    try:
        if a.cmd == "prepare":
            cells.prepare(a.spec, a.out)
        elif a.cmd == "kernel":
            cells.kernel_job(a.spec, a.family, a.transform, a.seed, a.split, a.out)
        elif a.cmd == "kernel-cell":
            if not len(a.m) == len(a.out_ntk) == len(a.out_nngp):
                raise ValueError("kernel-cell: give one --out-ntk and one --out-nngp per --m")
            cells.kernel_cell(
                a.spec, a.study, a.arch, a.transform, a.m, a.split, a.kernels, a.spec["seeds"],
                {"ntk": a.out_ntk, "nngp": a.out_nngp},
            )
        elif a.cmd == "train":
            cells.train_cell(
                a.spec, a.study, a.inference, a.arch, a.transform, a.width, a.m, a.split, a.out, a.first_layer
            )
        elif a.cmd == "merge":
            from synsym.io import merge_cells

            df = merge_cells(a.cells, a.out, a.csv)
            print(f"merged {len(a.cells)} cells, {len(df)} rows -> {a.out}", file=sys.stderr)
        elif a.cmd == "figure":
            import pandas as pd

            from synsym import figures

            tables = {Path(t).stem: pd.read_parquet(t) for t in a.tables}
            for path in figures.make(a.name, tables, Path(a.out).parent):
                print(f"wrote {path}", file=sys.stderr)
        elif a.cmd in ("fits", "sdist", "symmetry"):
            write_table(DERIVED[a.cmd](a), a.out, a.csv)
    except (ValueError, RuntimeError, DataError, MemoryError, FileNotFoundError) as e:
        print(f"synsym {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


def plan_cmd(a) -> int:
    """``synsym plan``: the bill of a preset, per rule and in total, from this machine's calibration."""
    import yaml
    from snakemake.utils import update_config

    from synsym import plan
    from synsym.config import ConfigError, validate

    root = Path(__file__).resolve().parents[2]
    try:
        config = yaml.safe_load((root / "config.yaml").read_text())
        for f in a.configfile:
            update_config(config, yaml.safe_load(Path(f).read_text()))
        if a.device:
            config["device"] = a.device
        validate(config)
        device = "cuda" if config["device"] == "cuda" else "cpu"
        path = Path(a.calibration) if a.calibration else plan.default_path(device)
        if a.calibration and not a.calibrate and not path.exists():
            raise plan.PlanError(f"--calibration {path} does not exist; add --calibrate to measure this machine into it")
        if a.calibrate or (not a.calibration and not plan.up_to_date(config, path)):
            from synsym.training import resolve_device

            try:  # a cuda plan needs a GPU here, or a GPU's --calibration file
                resolve_device(config["device"])
            except RuntimeError as e:
                raise plan.PlanError(f"{e}; or plan with a GPU's calibration: --calibration FILE") from None
            plan.calibrate(config, path)
        cal = plan.load(path)
        lacking = plan.missing(config, cal)
        if lacking:
            raise plan.PlanError(f"calibration {path} lacks {', '.join(lacking[:3])}{' ...' if len(lacking) > 3 else ''}; "
                                 "run `python -m synsym.cli plan --calibrate` with this config on the target machine")
    except (ConfigError, plan.PlanError, ValueError, RuntimeError, OSError) as e:
        print(f"synsym plan: error: {e}", file=sys.stderr)
        return 2
    rows = plan.bill(config, cal)
    unit = "GPU-hours" if cal["device"] == "cuda" else "CPU-hours"
    print(f"# plan for run {config['run_name']!r}: calibration {path} ({cal['device_name']}, {cal['machine']}, "
          f"1 {'GPU' if cal['device'] == 'cuda' else 'thread'} per job)")
    print(f"# training jobs are priced at their step cap (training.max_steps = {config['training']['max_steps']}); "
          f"requests = prediction x {config['plan']['safety_factor']}")
    print(plan.summary(rows, unit))
    print(f"# conv-family kernels: {plan.kernel_flops(config):.3g} float64 FLOPs in all "
          "(47 per element and layer, synsym.engine.flops_per_entry): divide by a device's float64 rate for a floor")
    if a.jobs:
        import pandas as pd

        pd.DataFrame(rows).to_csv(a.jobs, sep="\t", index=False, float_format="%.4g")
    if a.compare:
        print(plan.compare(rows, plan.measured(a.compare)))
    return 0


def write_table(df, out: str, csv: str) -> None:
    """A derived (non-cell) table, atomically, as Parquet plus CSV."""
    from synsym.io import atomic_path

    with atomic_path(out) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    print(f"{len(df)} rows -> {out}", file=sys.stderr)


def _fits(a):
    import pandas as pd

    from synsym.studies import scaling_fits

    return scaling_fits(pd.concat([pd.read_parquet(t) for t in a.tables], ignore_index=True))


def _sdist(a):
    import numpy as np

    from synsym.data import Split
    from synsym.studies import sdist_table

    preds = {}
    for path in a.preds:  # .../cells/sdist/{inference}/{arch}/so3_path-t{t}/w{width}_m{m}.pred.npz
        parts = Path(path).parts
        inf, arch, tid, name = parts[-4], parts[-3], parts[-2], parts[-1]
        width = name.split("_")[0][1:]
        t = float(tid.split("-t")[1])
        preds[(arch, inf, None if width == "inf" else int(width), t)] = np.load(path)["pred"]
    return sdist_table(preds, Split.load(a.split).y_test)


def _symmetry(a):
    import pandas as pd

    from synsym import architectures as A
    from synsym.kernels import FAMILY_MEMBERS, load_kernels
    from synsym.studies import kernel_invariance, symmetry_report

    files = {(Path(k).parts[-3], Path(k).parts[-2]): k for k in a.kernels}  # (family, transform) -> path
    diffs = {}
    for fam in {A.get(arch).kernel_family for arch in a.archs}:
        if (fam, "identity") not in files:
            raise ValueError("symmetry report needs the identity transform in grid.transforms")
        base = load_kernels(files[(fam, "identity")])
        for (f, tid), path in files.items():
            if f != fam or tid == "identity":
                continue
            kern = load_kernels(path)
            for arch in a.archs:
                if A.get(arch).kernel_family == fam and (arch == "lcn" or arch in FAMILY_MEMBERS[fam]):
                    for kind in ("ntk", "nngp"):
                        diffs[(arch, tid, kind)] = kernel_invariance(base, kern, arch, kind)
    return symmetry_report(pd.read_parquet(a.grid), diffs)


DERIVED = {"fits": _fits, "sdist": _sdist, "symmetry": _symmetry}


if __name__ == "__main__":
    sys.exit(main())
