"""The bill: every job of a preset priced, summed per rule, checked against the cluster's limits, and
compared with what a run measured (``python -m synsym.cli plan``). Predictions come from pipeline.cost at
a calibration's rates (pipeline.calibration); requests from pipeline.slurm.
"""

from __future__ import annotations

import math
from pathlib import Path

from synsym.pipeline.calibration import block_for, train_key
from synsym.pipeline.cost import job_steps, kernel_flops, predict, split_sizes, train_steps_s
from synsym.pipeline.jobs import Job, jobs, read_benchmarks, train_seeds
from synsym.pipeline.slurm import RESUMABLE, attempts, request
from synsym.pipeline.steps import predicted_steps

# ---------------------------------------------------------------- the bill


def report(config: dict, cal: dict, rows: list[dict], cal_name: str) -> str:
    """What ``synsym plan`` prints: the bill per rule, the kernel reuse, the step table, the jobs over the
    cluster's limits, the attempts of resumable jobs, the shards needed and the kernel FLOPs."""
    unit = "GPU-hours" if cal["device"] == "cuda" else "CPU-hours"
    train = [r for r in rows if r["rule"] == "train_cell"]
    p, over = config["plan"], over_limits(rows, config)
    out = [f"# plan for run {config['run_name']!r}: calibration {cal_name} ({cal['device_name']}, {cal['machine']}, "
           f"1 {'GPU' if cal['device'] == 'cuda' else 'thread'} per job); requests = prediction x {p['safety_factor']}"]
    if train:
        out.append(f"# training jobs are priced at their predicted steps to stop (a power law in n_train fitted to "
                   f"bench/convergence.py, synsym.pipeline.steps), at most their cap (training.max_steps = "
                   f"{config['training']['max_steps']}, max_steps_nn = {config['training'].get('max_steps_nn')}): "
                   f"{sum(r['pred_s'] for r in train) / 3600:.3g} {unit} at predicted steps, "
                   f"{sum(r['cap_s'] for r in train) / 3600:.3g} at the cap; a resumable training job asks for one attempt "
                   f"of at most plan.max_job_hours = {p['max_job_hours']:g} h at a time, so its requested hours are "
                   "below its prediction")
    out.append(summary(rows, unit))
    if any(r["rule"] == "kernel" for r in rows):
        out.append(reuse_line(config, cal, unit))
    if train:
        out.append(step_table(rows, config))
    by_rule = {r: sum(1 for o in over if o["rule"] == r) for r in dict.fromkeys(o["rule"] for o in over)}
    out.append(f"# jobs over plan.max_job_hours = {p['max_job_hours']:g} h or plan.max_job_mem_gb = {p['max_job_mem_gb']:g} GB: "
               + (", ".join(f"{r} {n}" for r, n in by_rule.items()) if over else "none"))
    multi = [attempts(r, config) for r in rows if r["rule"] in RESUMABLE]
    if multi:
        out.append(f"# resumable training jobs needing several attempts of <= {p['max_job_hours']:g} h: "
                   f"{sum(a > 1 for a in multi)}, up to {max(multi)} attempts (the profile's `retries` must allow them)")
    need = {f: shards_needed(config, cal, f) for f in config["kernels"]["shards"]}
    out.append("# kernels.shards: " + ", ".join(f"{f} = {config['kernels']['shards'][f]} (fits the limits from {need[f]})"
                                                for f in need))
    out.append(f"# conv-family kernels: {kernel_flops(config):.3g} float64 FLOPs in all "
               "(47 per element and layer, synsym.ntk.engine.flops_per_entry): divide by a device's float64 rate for a floor")
    return "\n".join(out)


def bill(config: dict, cal: dict) -> list[dict]:
    """One row per job: rule, name, predicted seconds and MB, and the Slurm request."""
    rows = []
    for job in jobs(config):
        s, mb = predict(job, config, cal)
        rt, mem = request(s, mb, config, rule=job.rule)
        row = {"rule": job.rule, "job": job.name, "pred_s": s, "pred_mb": mb, "req_min": rt, "req_mb": mem}
        if job.rule == "train_cell":  # also what the job would cost run to its cap
            w = job.wildcards
            steps, cap = job_steps(job, config)
            n_seeds = len(train_seeds(config, w["study"]))
            t = cal["train"][train_key(config, w["arch"], int(w["width"]), n_seeds)]
            m = int(w["m"])
            row.update(arch=w["arch"], inference=w["finite"], steps=steps, cap=cap,
                       cap_s=s + train_steps_s(config, t, n_seeds, m, cap) - train_steps_s(config, t, n_seeds, m, steps))
        rows.append(row)
    return rows


def reuse_line(config: dict, cal: dict, unit: str) -> str:
    """The kernel jobs' bill with and without kernels.reuse_invariant (one kernel job per Theorem 4.1
    class vs one per transform), the rest of the config as given."""
    import copy

    cost = {}
    for reuse in (False, True):
        probe = copy.deepcopy(config)
        probe["kernels"]["reuse_invariant"] = reuse
        ks = [predict(j, probe, cal)[0] for j in jobs(probe) if j.rule == "kernel"]
        cost[reuse] = (len(ks), sum(ks) / 3600)
    on = config["kernels"].get("reuse_invariant", True)
    return (f"# kernel jobs: {cost[False][0]} jobs, {cost[False][1]:,.1f} {unit} one per transform; {cost[True][0]} jobs, "
            f"{cost[True][1]:,.1f} {unit} one per Theorem 4.1 class (kernels.reuse_invariant = {str(on).lower()}, "
            f"this plan: {'the latter' if on else 'the former'})")


def step_table(rows: list[dict], config: dict) -> str:
    """Training jobs by (architecture, inference): n_train range, predicted steps and cap, and the
    device-hours at the predicted steps vs at the cap (Markdown)."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["rule"] == "train_cell":
            by.setdefault((r["arch"], r["inference"]), []).append(r)
    lines = ["| architecture | inference | jobs | predicted steps (min-max) | cap | alpha (fit sizes) | "
             "hours at predicted | hours at cap |", "|---|---|---|---|---|---|---|---|"]
    for (arch, inf), rs in sorted(by.items()):
        f = predicted_steps(arch, inf, 1, 1)[1] if config["plan"].get("price_steps", "predicted") != "cap" else None
        fit = f"{f.alpha:.2f} ({', '.join(map(str, f.sizes))})" if f else "priced at the cap"
        lines.append(f"| {arch} | {inf} | {len(rs)} | {min(r['steps'] for r in rs):,}-{max(r['steps'] for r in rs):,} | "
                     f"{max(r['cap'] for r in rs):,} | {fit} | {sum(r['pred_s'] for r in rs) / 3600:.3g} | "
                     f"{sum(r['cap_s'] for r in rs) / 3600:.3g} |")
    return "\n".join(lines)


def over_limits(rows: list[dict], config: dict) -> list[dict]:
    """The jobs predicted to need more than plan.max_job_mem_gb, or to run longer than plan.max_job_hours
    without resuming (a resumable job runs in several attempts instead)."""
    p = config["plan"]
    return [r for r in rows if r["pred_mb"] > 1024 * p["max_job_mem_gb"]
            or (r["pred_s"] > 3600 * p["max_job_hours"] and r["rule"] not in RESUMABLE)]


def shards_needed(config: dict, cal: dict, family: str) -> int | None:
    """The fewest kernels.shards.<family> whose every shard fits plan.max_job_hours and
    plan.max_job_mem_gb on the calibrated machine (None: not even one row block per shard fits)."""
    import copy

    from synsym.ntk.kernels import row_blocks

    p, n_blocks = config["plan"], len(row_blocks(split_sizes(config), block_for(config, family)))
    probe = copy.deepcopy(config)
    job = lambda k: Job("kernel", {"family": family, "transform": "identity", "seed": "0", "shard": str(k)})  # noqa: E731
    probe["kernels"]["shards"][family] = 1
    whole_s = predict(job(0), probe, cal)[0]
    shards = max(1, math.ceil(whole_s / (3600 * p["max_job_hours"])))
    while shards <= n_blocks:
        probe["kernels"]["shards"][family] = shards
        worst = [predict(job(k), probe, cal) for k in range(shards)]
        if max(s for s, _ in worst) <= 3600 * p["max_job_hours"] and max(mb for _, mb in worst) <= 1024 * p["max_job_mem_gb"]:
            return shards
        shards = max(shards + 1, math.ceil(shards * max(s for s, _ in worst) / (3600 * p["max_job_hours"])))
    return None


def summary(rows: list[dict], unit: str) -> str:
    """Per-rule totals and the whole preset, as a Markdown table."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["rule"], []).append(r)
    lines = [f"| rule | jobs | predicted {unit} | longest job | peak memory | requested {unit} |",
             "|---|---|---|---|---|---|"]
    for rule, rs in sorted(by.items(), key=lambda kv: -sum(r["pred_s"] for r in kv[1])):
        lines.append(f"| {rule} | {len(rs)} | {sum(r['pred_s'] for r in rs) / 3600:.3g} | "
                     f"{_dur(max(r['pred_s'] for r in rs))} | {max(r['pred_mb'] for r in rs) / 1024:.3g} GB | "
                     f"{sum(r['req_min'] for r in rs) / 60:.3g} |")
    total = sum(r["pred_s"] for r in rows) / 3600
    lines.append(f"| **total** | {len(rows)} | **{total:.3g}** | | | {sum(r['req_min'] for r in rows) / 60:.3g} |")
    return "\n".join(lines)


def _dur(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h" if s < 48 * 3600 else f"{s / 86400:.1f} d"


def measured(run: str | Path) -> dict[str, tuple[float, float]]:
    """(seconds, peak RSS in MB) per job from Snakemake's benchmark TSVs under results/<run>/benchmarks,
    keyed like Job.name (synsym.pipeline.jobs reads them, from the rules' own patterns)."""
    return {job.name: v for job, v in read_benchmarks(run).items()}


def compare(rows: list[dict], meas: dict[str, tuple[float, float]]) -> str:
    """Predicted vs measured seconds (summed) and peak memory (largest job) per rule, over the
    jobs that have a benchmark."""
    by: dict[str, list[tuple[dict, tuple[float, float]]]] = {}
    for r in rows:
        if r["job"] in meas:
            by.setdefault(r["rule"], []).append((r, meas[r["job"]]))
    lines = ["| rule | jobs measured | predicted s | measured s | measured / predicted | predicted peak MB | "
             "measured peak MB |", "|---|---|---|---|---|---|---|"]
    for rule, pm in sorted(by.items()):
        p, m = sum(r["pred_s"] for r, _ in pm), sum(x[0] for _, x in pm)
        lines.append(f"| {rule} | {len(pm)} | {p:.0f} | {m:.0f} | {m / p:.2f} | "
                     f"{max(r['pred_mb'] for r, _ in pm):.0f} | {max(x[1] for _, x in pm):.0f} |")
    return "\n".join(lines)


def rule_ratios(rows: list[dict], meas: dict[str, tuple[float, float]]) -> dict[str, float]:
    """measured / predicted total seconds per rule (the planner test's check)."""
    out: dict[str, list[float]] = {}
    for r in rows:
        if r["job"] in meas:
            out.setdefault(r["rule"], [0.0, 0.0])
            out[r["rule"]][0] += r["pred_s"]
            out[r["rule"]][1] += meas[r["job"]][0]
    return {k: m / p for k, (p, m) in out.items()}


# ---------------------------------------------------------------- the command


def main(configfile: list[str], device: str | None, calibration_file: str | None, calibrate: bool, jobs_tsv: str | None,
         compare_run: str | None) -> int:
    """``synsym plan``: the bill of a preset, per rule and in total, from this machine's calibration (or a given
    one); problems end it with one line and status 2."""
    import sys

    from synsym.pipeline import calibration
    from synsym.pipeline.config import SCHEMA, ConfigError, load_config, study_root, validate

    try:
        config = load_config(configfile)
        if device:
            config["device"] = device
        validate(config, study_root(None, configfile) / SCHEMA)
        kind = "cuda" if config["device"] == "cuda" else "cpu"
        path = Path(calibration_file) if calibration_file else calibration.default_path(kind)
        if calibration_file and not calibrate and not path.exists():
            raise calibration.PlanError(f"--calibration {path} does not exist; add --calibrate to measure this machine into it")
        if calibrate or (not calibration_file and not calibration.up_to_date(config, path)):
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
    rows = bill(config, cal)
    print(report(config, cal, rows, str(path)))
    if jobs_tsv:
        import pandas as pd

        pd.DataFrame(rows).to_csv(jobs_tsv, sep="\t", index=False, float_format="%.4g")
    if compare_run:
        print(compare(rows, measured(compare_run)))
    return 0


def imagenet_cost(configfile: list[str]) -> str:
    """``synsym imagenet cost``: the ImageNet half's jobs and their GPU-hours, from the config's imagenet section."""
    import pandas as pd

    from synsym.imagenet import cells as IC
    from synsym.imagenet import registry as IR
    from synsym.pipeline.config import load_config

    cfg = load_config(configfile)["imagenet"]
    IR.validate(cfg)
    return pd.DataFrame(IC.cost_table(cfg)).to_string(index=False, float_format=lambda v: f"{v:,.1f}")
