"""The Snakemake study: paper-scale DAG counts, lint, and the smoke preset end to end
(real mini CIFAR-10, real neural-tangents kernels, real training), then reruns."""

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import ROOT, dry_counts, snakemake
from helpers import load_config as merged
from snakemake.utils import update_config

from synsym.core import architectures as A
from synsym.core import transforms as T
from synsym.core.io import CELL_SCHEMA, pred_path, read_cell
from synsym.pipeline import jobs as J

FIGURES = ["fig2_grid", "fig2_vs_kernel", "fig3_width", "fig4_learning_curves", "figS1_sdist", "figS5_uniform_init", "figS6_scaling",
           "symmetry_report", "fig1_transforms", "figS2_so3_path"]
TABLES = ["grid", "width", "curves", "uniform_init", "sdist", "scaling", "curves_fits", "scaling_fits",
          "sdist_distances", "symmetry_report", "ridge_wins", "finite_vs_kernel"]


def expected_counts(cfg: dict) -> dict[str, int]:
    """Jobs per rule, counted from the config by hand (independent of the rules)."""
    g, w, c = cfg["grid"], cfg["width_sweep"], cfg["curves"]
    n_fin = len([i for i in g["inferences"] if i != "ntk"])
    train = n_fin * len(g["architectures"]) * len(g["transforms"])
    train += len(w["inferences"]) * len(w["transforms"]) * len(w["widths"])
    curve_fin = [x for x in c["cells"] if x["inference"] != "ntk"]
    train += len(curve_fin) * (len(c["sizes"]) + (1 if c["flip"] else 0))
    kcells = ("ntk" in g["inferences"]) * len(g["architectures"]) * len(g["transforms"])
    kcells += sum(len(c["sizes"]) for x in c["cells"] if x["inference"] == "ntk")
    transforms_needed = {served(cfg, A.get(a).kernel_family, t) for a in g["architectures"] for t in g["transforms"]}
    transforms_needed |= {served(cfg, A.get(x["architecture"]).kernel_family, x["transform"]) for x in c["cells"]
                          if x["inference"] == "ntk"}
    u, sd = cfg["uniform_init"], cfg["sdist"]
    train += len(u["architectures"]) + len(sd["widths"]) * (len(sd["ts"]) + 1)  # uniform init; vec on the path, clean gap
    train -= shared_with_grid(cfg)
    kcells += len(sd["ts"])  # VEC_inf on each point of the path
    transforms_needed |= {("conv", f"so3_path-t{t:g}") for t in sd["ts"]}
    kernel = sum(cfg["kernels"]["shards"][fam] for fam, _ in transforms_needed) * len(cfg["kernel_seeds"])
    return {"prepare": 1, "kernel": kernel, "train_cell": train,
            "kernel_cell": kcells, "scaling_cells": len(g["architectures"]) * len(g["transforms"]),
            "merge": 6, "fits": 2, "sdist_table": 1, "symmetry_report": 1, "finite_vs_kernel": 1, "figure": 8,
            "transform_figures": 1, "ridge_wins": 1, "all": 1}


def served(cfg: dict, family: str, transform: str) -> tuple[str, str]:
    """Which kernel job serves (family, transform), by hand: with kernels.reuse_invariant, FCN's identity
    kernel serves every grid transform (O(3d)) and the conv family's serves O(3)⊗I_d."""
    if cfg["kernels"].get("reuse_invariant", True) and (
            (family == "fcn" and transform in T.TRANSFORMS) or (family == "conv" and transform == "o3_shared")):
        return family, "identity"
    return family, transform


def shared_with_grid(cfg: dict) -> int:
    """Width-sweep and curve cells that are grid cells (the grid's job computes them once)."""
    g, w, c = cfg["grid"], cfg["width_sweep"], cfg["curves"]
    n, widths = cfg["data"]["n_train"], cfg["model"]["widths"]
    shared = 0
    if w["architecture"] in g["architectures"] and widths[w["architecture"]] in w["widths"]:
        shared += len(set(w["inferences"]) & set(g["inferences"])) * len(set(w["transforms"]) & set(g["transforms"]))
    for x in c["cells"]:
        if x["inference"] != "ntk" and x["inference"] in g["inferences"] and x["architecture"] in g["architectures"]:
            shared += x["transform"] in g["transforms"] and n in c["sizes"]
    return shared


@pytest.mark.slow
def test_paper_dag_has_exact_job_counts():
    cfg = merged("presets/paper.yaml")
    got = dry_counts("--configfile", "presets/paper.yaml")
    want = expected_counts(cfg)
    assert got == want
    # 2 x 6 x 5 finite grid cells, 2 x 2 x 8 width cells, 3 x (8 + flips) curve cells, 6 uniform init,
    # 4 widths x (5 path points + GAP on clean data), less the grid's cells: VEC width 128 (2 inferences x 2 transforms)
    # and the 3 finite curves at 45,000; kernels: 2 fcn shards x 1 (the identity's serves every transform)
    # + 14 conv shards x (4 transforms, O(3)⊗I_d served by the identity's, + 5 path points)
    assert want["train_cell"] == 60 + 32 + 27 + 6 + 24 - 4 - 3 and want["kernel"] == 2 * 1 + 14 * 9
    off = dry_counts("--configfile", "presets/paper.yaml", "--config", 'kernels={"reuse_invariant": false}')["kernel"]
    assert off == 2 * 5 + 14 * 10


@pytest.mark.slow
def test_default_dag_counts():
    assert dry_counts() == expected_counts(merged())


@pytest.mark.slow
def test_one_study_preset_builds_that_study_alone():
    """config ``studies``: the synergy preset builds the grid, VEC's width points and what is drawn from them,
    nothing of the other studies. By hand: 5 architectures x NN+ on identity = 5 training cells and 5 NTK/NNGP
    cells, VEC at widths 48 and 96 (24 is the grid's); kernels: FCN in 1 shard, the conv family in 2; tables:
    grid, width, finite-vs-kernel, ridge wins, and no symmetry report (one transform, nothing to compare);
    figures: Fig. 2, its finite-vs-kernel bars and Fig. 3 (Fig. 1 and S2 from the data)."""
    got = dry_counts("--configfile", "presets/synergy-fig2-identity.yaml")
    assert got == {"prepare": 1, "kernel": 3, "train_cell": 5 + 2, "kernel_cell": 5, "merge": 2, "finite_vs_kernel": 1,
                   "ridge_wins": 1, "figure": 3, "transform_figures": 1, "all": 1}
    cfg = merged("presets/synergy-fig2-identity.yaml")
    assert sorted(j.rule for j in J.jobs(cfg)) == sorted(["prepare"] + ["kernel"] * 3 + ["train_cell"] * 7 + ["kernel_cell"] * 5)
    # its O(3)^d twin: the FCN kernel is the identity's (Theorem 4.1), the conv family's O(3)^d kernel in 2 shards
    got = dry_counts("--configfile", "presets/synergy-fig2-o3.yaml")
    assert got == {"prepare": 1, "kernel": 3, "train_cell": 5 + 2, "kernel_cell": 5, "merge": 2, "finite_vs_kernel": 1,
                   "ridge_wins": 1, "figure": 3, "transform_figures": 1, "all": 1}


@pytest.mark.slow
def test_lint_clean():
    p = snakemake("--lint")
    assert "Congratulations" in p.stdout + p.stderr


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, mini_archive):
    """The whole smoke preset, once, in a scratch working directory."""
    wd = tmp_path_factory.mktemp("smoke")
    url, md5 = mini_archive
    (wd / "data.yaml").write_text(yaml.safe_dump({"data": {"url": url, "md5": md5, "dir": str(wd / "cifar")}}))
    args = ("--configfile", str(ROOT / "presets/smoke.yaml"), str(wd / "data.yaml"))
    snakemake("--cores", "2", *args, cwd=wd, timeout=1200)
    return wd, args


@pytest.mark.slow
def test_smoke_produces_every_table_and_figure(smoke):
    wd, _ = smoke
    r = wd / "results" / "smoke"
    for f in FIGURES:
        for ext in ("png", "pdf"):
            assert (r / "figures" / f"{f}.{ext}").stat().st_size > 1000
    grid = pd.read_parquet(r / "tables" / "grid.parquet")
    combos = set(zip(grid["inference"], grid["architecture"], grid["transform"]))
    want = {(i, a, t) for i in A.INFERENCES for a in A.ARCHITECTURES for t in T.TRANSFORMS}
    assert want <= combos and len(want) == 90
    assert {(i, a, t) for i, a, t in combos if i == "nngp"} == {("nngp", a, t) for a in A.ARCHITECTURES
                                                                for t in T.TRANSFORMS}
    assert list(grid.columns) == CELL_SCHEMA.names
    assert (grid["run"] == "smoke").all()
    # data.n_test_pool: kernels and finite nets test on the same 40 + 20 images, and the paired table says so
    assert (grid["n_test"] == 60).all()
    fvk = pd.read_parquet(r / "tables" / "finite_vs_kernel.parquet")
    assert len(fvk) == 2 * 6 * 5 and (fvk["n_test"] == 60).all()
    assert grid[grid["inference"] == "nn"].groupby(["architecture", "transform"]).size().eq(2).all()  # 2 seeds
    assert (r / "tables" / "grid.csv").read_text().startswith("study,inference,architecture")
    for t in TABLES:
        assert len(pd.read_parquet(r / "tables" / f"{t}.parquet")) > 0, t
    rep = pd.read_parquet(r / "tables" / "symmetry_report.parquet")
    kern = rep[rep["measure"].str.startswith("rel_kernel_change")]
    assert len(kern) == 2 * 6 * 4 and kern["agrees"].all()  # the theorem holds for every kernel cell
    # the reused kernels (FCN on 4 transforms, the conv family on O(3)⊗I_d) are checked on a block, to 1e-12
    sampled = kern[kern["measure"] == "rel_kernel_change_sampled"]
    assert set(zip(sampled["architecture"], sampled["transform"])) == (
        {("fcn", t) for t in T.TRANSFORMS if t != "identity"} | {(a, "o3_shared") for a in A.ARCHITECTURES if a != "fcn"})
    assert len(sampled) == 2 * 9 and (sampled["value"] < 1e-12).all()
    assert "reuse fcn/o_3d <- identity: max rel diff" in (r / "logs/symmetry_report.log").read_text()
    sd = pd.read_parquet(r / "tables" / "sdist_distances.parquet")
    assert set(sd["t"]) == {0.0, 1.0}
    # ensembles of accepted runs only, against GAP_n on the clean data (App. E)
    for row in sd.itertuples(index=False):
        tid = "so3_path-t0" if row.t == 0 else "so3_path-t1"
        vec = read_cell(r / f"cells/sdist/nn_plus/vec/{tid}/w{int(row.width)}_m60.parquet")
        gap = read_cell(r / f"cells/sdist/nn_plus/gap/identity/w{int(row.width)}_m60.parquet")
        assert (row.ensemble_size, row.gap_ensemble_size) == (vec["accepted"].sum(), gap["accepted"].sum())
        if row.ensemble_size and row.gap_ensemble_size:
            assert row.sdist_to_gap > 0 and row.sdist_to_vec_ntk > 0
    fits = pd.read_parquet(r / "tables" / "scaling_fits.parquet")
    assert len(fits) == 2 * 6 * 5 and (fits["study"] == "scaling").all() and fits["alpha_mse"].notna().all()
    # a fit per kernel curve (NTK, NNGP riding along) and per finite curve with accepted runs
    curves = pd.read_parquet(r / "tables" / "curves.parquet")
    fitted = curves[curves["inference"].isin(["ntk", "nngp"]) | curves["accepted"]]
    assert len(pd.read_parquet(r / "tables" / "curves_fits.parquet")) == len(
        fitted.groupby(["inference", "architecture", "transform"]))
    # a kernel learning curve holds one ridge over its sizes (picked at the largest), re-picks ride along
    kc = curves[curves["inference"].isin(["ntk", "nngp"])]
    assert kc["ridge_repick"].notna().all() and (kc.groupby(["inference", "architecture", "seed"])["ridge"].nunique() == 1).all()
    top = kc[kc["n_train"] == kc["n_train"].max()]
    assert (top["ridge"] == top["ridge_repick"]).all() and (top["test_acc"] == top["test_acc_repick"]).all()
    wins = pd.read_parquet(r / "tables" / "ridge_wins.parquet")
    assert wins.groupby(["study", "inference"])["wins"].sum()[("curves", "ntk")] == (kc["inference"] == "ntk").sum()
    assert set(wins["ridge"]) <= {*(f"{x:g}" for x in merged("presets/smoke.yaml")["kernels"]["ridges"]), "ridgeless"}
    # Theorem 4.1 visible in the results: invariant NTK cells have equal accuracy
    ntk = grid[grid["inference"] == "ntk"].set_index(["architecture", "transform"])["test_acc"]
    assert ntk[("fcn", "identity")] == ntk[("fcn", "o_3d")] == ntk[("fcn", "perm_3d")]
    assert ntk[("vec", "identity")] == ntk[("vec", "o3_per_pixel")] == ntk[("lcn", "o3_per_pixel")]
    assert ntk[("gap", "identity")] == ntk[("gap", "o3_shared")]
    # progress in logs
    log = (r / "logs/cells/grid/nn/vec/identity/w8_m60.log").read_text()
    assert "step 20/20" in log and "eta" in log


@pytest.mark.slow
def test_plan_predicts_the_smoke_run(smoke, tmp_path):
    """The planner, calibrated here, predicts each rule's measured time (Snakemake's benchmark
    TSVs of the smoke run, 2 jobs at a time) within a factor of 3, for every benchmarked rule."""
    from synsym.pipeline import calibration as C
    from synsym.pipeline import plan as P

    wd, _ = smoke
    cfg = merged("presets/smoke.yaml")
    update_config(cfg, yaml.safe_load((wd / "data.yaml").read_text()))  # the mini archive: prepare reads its size
    cal = C.calibrate(cfg, tmp_path / "calibration.json", log=lambda _: None)
    meas = P.measured(wd / "results" / "smoke")
    # every compute job left a benchmark, read back (synsym.pipeline.jobs) as that very job
    assert set(meas) == {j.name for j in J.jobs(cfg)}
    ratios = P.rule_ratios(P.bill(cfg, cal), meas)
    assert set(ratios) == {"prepare", "kernel", "kernel_cell", "scaling_cells", "train_cell"}, sorted(meas)[:5]
    bad = {r: round(x, 2) for r, x in ratios.items() if not 1 / 3 <= x <= 3}
    assert not bad, (bad, ratios)


@pytest.mark.slow
def test_rerun_one_cell_schedules_only_that_cell(smoke):
    wd, args = smoke
    assert dry_counts(*args, cwd=wd) == {}
    victim = wd / "results/smoke/cells/grid/nn_plus/gap/o3_per_pixel/w8_m60.parquet"
    before = read_cell(victim)
    with np.load(pred_path(str(victim))) as z:
        preds_before = {k: z[k] for k in z.files}
    victim.unlink()
    # the grid table feeds fig2, fig3 (its NTK line), figS5, the symmetry report, the ridge counts
    # (which reads only its kernel rows, but the table is one file) and the finite-vs-kernel table and figure;
    # nothing else reruns
    assert dry_counts(*args, cwd=wd) == {"train_cell": 1, "merge": 1, "symmetry_report": 1, "ridge_wins": 1,
                                         "finite_vs_kernel": 1, "figure": 5, "all": 1}
    snakemake("--cores", "2", *args, cwd=wd)
    after = read_cell(victim)
    # bit-for-bit reproducible on the same machine, except wall time: every other column exactly, and the
    # test predictions (S-Dist's input) array for array
    cols = [c for c in before.columns if c != "wall_s"]
    pd.testing.assert_frame_equal(before[cols], after[cols], check_exact=True)
    with np.load(pred_path(str(victim))) as z:
        assert set(z.files) == set(preds_before) and all(np.array_equal(z[k], preds_before[k]) for k in z.files)


@pytest.mark.slow
def test_param_change_reruns_only_affected_jobs(smoke, tmp_path):
    wd, args = smoke
    f = tmp_path / "more_steps.yaml"
    f.write_text(yaml.safe_dump({"training": {"max_steps": 21}}))
    c = dry_counts(*args, str(f), cwd=wd)
    assert c["train_cell"] == expected_counts(merged("presets/smoke.yaml"))["train_cell"]
    assert "kernel" not in c and "kernel_cell" not in c and "prepare" not in c
    f.write_text(yaml.safe_dump({"kernels": {"ridges": [0.5]}}))
    c = dry_counts(*args, str(f), cwd=wd)
    assert "train_cell" not in c and "kernel" not in c and c["kernel_cell"] > 0


@pytest.mark.slow
def test_width_and_curve_cells_that_are_grid_cells_are_trained_once(smoke, tmp_path):
    """The width sweep at the grid's VEC width and the curves at n_train read the grid's files, and
    that is exact: training the cell under the width study's own name gives the same numbers."""
    import json
    import subprocess
    import sys

    wd, _ = smoke
    r = wd / "results" / "smoke"
    cfg = merged("presets/smoke.yaml")
    w, n = cfg["model"]["widths"]["vec"], cfg["data"]["n_train"]
    assert not list((r / "cells" / "width").rglob(f"w{w}_m{n}.parquet"))
    assert not [f for f in (r / "cells" / "curves").rglob(f"w*_m{n}.parquet") if "winf" not in f.name]  # kernels keep theirs
    width = pd.read_parquet(r / "tables" / "width.parquet")
    curves = pd.read_parquet(r / "tables" / "curves.parquet")
    assert (width["study"] == "width").all() and (curves["study"] == "curves").all()
    shared = width[width["width"] == w]
    assert len(shared) == 2 * 2 * len(cfg["seeds"])  # nn, nn_plus x o3_shared, o3_per_pixel
    assert len(curves[(curves["n_train"] == n) & curves["inference"].isin(A.FINITE_INFERENCES)]) == 3 * len(cfg["seeds"])
    spec = {"run_name": "smoke", "global_seed": cfg["global_seed"], "depth": cfg["model"]["depth"],
            "padding": cfg["model"]["padding"], "seeds": cfg["seeds"], "device": cfg["device"], "training": cfg["training"]}
    out = tmp_path / "width_cell.parquet"
    subprocess.run([sys.executable, "-m", "synsym.cli", "train", "--spec", json.dumps(spec), "--study", "width",
                    "--inference", "nn", "--arch", "vec", "--transform", "o3_shared", "--width", str(w), "--m", str(n),
                    "--split", str(r / "data" / "split.npz"), "--out", str(out)], check=True, capture_output=True)
    own = read_cell(str(out))
    grid = read_cell(str(r / f"cells/grid/nn/vec/o3_shared/w{w}_m{n}.parquet"))
    cols = [c for c in own.columns if c not in ("wall_s", "study")]
    pd.testing.assert_frame_equal(own[cols], grid[cols], check_exact=True)
    with np.load(pred_path(str(out))) as a, np.load(pred_path(str(r / f"cells/grid/nn/vec/o3_shared/w{w}_m{n}.parquet"))) as b:
        assert np.array_equal(a["pred"], b["pred"]) and np.array_equal(a["seeds"], b["seeds"])
    table = shared[(shared["inference"] == "nn") & (shared["transform"] == "o3_shared")].reset_index(drop=True)
    pd.testing.assert_frame_equal(table[cols], own[cols], check_exact=True)


@pytest.mark.slow
def test_reused_kernels_give_the_tables_of_kernels_computed_per_transform(smoke, tmp_path):
    """kernels.reuse_invariant (on in the fixture) against one kernel job per transform, in a fresh results
    tree: every reused NTK/NNGP grid cell picks the same ridge and scores the same accuracies, and each
    per-transform kernel equals the one served for it to 1e-12 (Theorem 4.1 on whole kernels)."""
    wd, args = smoke
    pairs = [("fcn", t) for t in T.TRANSFORMS if t != "identity"] + [(a, "o3_shared") for a in A.ARCHITECTURES if a != "fcn"]
    targets = [f"results/smoke/cells/grid/ntk/{a}/{t}/winf_m60.parquet" for a, t in pairs]
    off = ("--config", 'kernels={"reuse_invariant": false}')
    assert dry_counts(*targets, *args, *off, cwd=tmp_path)["kernel"] == 4 * 1 + 1 * 2  # fcn x 4, conv o3_shared x 2 shards
    snakemake("--cores", "2", *targets, *args, *off, cwd=tmp_path, timeout=900)
    cols = ["seed", "ridge", "val_acc", "test_acc", "test_mse"]
    for a, t in pairs:
        for kind in ("ntk", "nngp"):
            rel = f"results/smoke/cells/grid/{kind}/{a}/{t}/winf_m60.parquet"
            pd.testing.assert_frame_equal(read_cell(tmp_path / rel)[cols[:-1]], read_cell(wd / rel)[cols[:-1]], check_exact=True)
            np.testing.assert_allclose(read_cell(tmp_path / rel)["test_mse"], read_cell(wd / rel)["test_mse"], rtol=1e-9)
    for fam, t, shards in [("fcn", "o_3d", 1), ("fcn", "perm_3d", 1), ("conv", "o3_shared", 2)]:
        for k in range(shards):
            own = tmp_path / f"results/smoke/kernels/{fam}/{t}/s0/shard{k}"
            served = wd / f"results/smoke/kernels/{fam}/identity/s0/shard{k}"
            for f in own.glob("*.npy"):
                want = np.load(served / f.name)
                assert np.abs(np.load(f) - want).max() <= 1e-12 * np.abs(want).max(), (fam, t, f.name)
    assert not (wd / "results/smoke/kernels/fcn/o_3d").exists()  # with reuse, no job computed it


@pytest.mark.slow
def test_device_auto_runs_kernel_curves_and_the_symmetry_report(smoke, tmp_path):
    """config device: auto reaches a job as the string "auto"; the command line resolves it once (core.jobspec),
    so the kernel curves and the symmetry report (both compute kernels) run with it on the smoke preset's data."""
    import json
    import subprocess
    import sys

    wd, args = smoke
    r = wd / "results/smoke"
    cfg = merged(*args[1:])
    kernels = {k: cfg["kernels"][k] for k in ("engine", "precision", "block_size", "max_memory_gb")}
    base = {"global_seed": 0, "depth": cfg["model"]["depth"], "device": "auto", "kernels": kernels}

    def cli(*argv: str) -> None:
        p = subprocess.run([sys.executable, "-m", "synsym.cli", *argv], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-2000:]

    curves = {"paddings": ["zero"], "sizes": [10, 20], "draws": 2, "transforms": {"identity": 20, "o3_shared": 20}}
    cli("kernel-curves", "--spec", json.dumps({**base, "ridges": cfg["kernels"]["ridges"], "kernel_curves": curves}),
        "--split", str(r / "data/split.npz"), "--outdir", str(tmp_path / "kc"))
    reuse = json.loads((tmp_path / "kc/reuse.json").read_text())
    assert sorted(reuse) == ["zero/conv/o3_shared", "zero/fcn/o3_shared"]
    dirs = sorted({str(wd / d) for f in A.KERNEL_FAMILIES for t in cfg["grid"]["transforms"]  # the rule's inputs
                   for d in J.serving_shards(cfg, f, t, cfg["kernel_seeds"][:1])})
    cli("symmetry", "--grid", str(r / "tables/grid.parquet"), "--kernels", *dirs, "--archs", *cfg["grid"]["architectures"],
        "--reused", *J.reused_kernels(cfg), "--split", str(r / "data/split.npz"),
        "--spec", json.dumps({**base, "padding": cfg["model"]["padding"], "seed": 0}),
        "--out", str(tmp_path / "sym.parquet"), "--csv", str(tmp_path / "sym.csv"))
    key = ["architecture", "inference", "transform", "measure"]  # rows come in the order of --kernels
    got = pd.read_parquet(tmp_path / "sym.parquet").sort_values(key, ignore_index=True)
    want = pd.read_parquet(r / "tables/symmetry_report.parquet").sort_values(key, ignore_index=True)  # device cpu
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.slow
def test_a_wrong_reuse_stops_the_symmetry_report(smoke, monkeypatch):
    """Serve O(3)^d's conv kernel from the identity's (Theorem 4.1 does not allow it: GAP is not O(3)^d-invariant):
    the report's block check must refuse it in one line, and pass the allowed O(3)⊗I_d reuse."""
    from synsym.core import jobspec
    from synsym.study import symmetry

    wd, _ = smoke
    r = wd / "results/smoke"
    files = {("conv", "identity"): [str(r / f"kernels/conv/identity/s0/shard{k}") for k in range(2)]}
    # device auto, resolved where the job starts (core.jobspec), as the symmetry command does
    spec = jobspec.load({"global_seed": 0, "depth": 2, "seed": 0, "device": "auto", "padding": "circular",
                         "kernels": {"engine": "fast", "precision": "float64"}}, "symmetry")
    split, archs = str(r / "data/split.npz"), ["vec", "lcn", "gap", "lap4", "lap8"]
    ok = symmetry.check_served(spec, split, "conv", "o3_shared", files, archs)
    assert len(ok) == 2 * 5 and max(ok.values()) < 1e-12
    monkeypatch.setattr(A, "kernel_source", lambda family, t: "identity")
    with pytest.raises(ValueError, match=r"^kernel conv/o3_per_pixel: served by identity's kernel .* differs from it by"):
        symmetry.check_served(spec, split, "conv", "o3_per_pixel", files, archs)


@pytest.mark.slow
def test_report_has_every_figure(smoke):
    wd, args = smoke
    snakemake(*args, "--report", str(wd / "report.html"), cwd=wd)
    html = (wd / "report.html").read_text(errors="ignore")
    for f in FIGURES:
        assert f in html


def test_merge_refuses_a_file_with_the_wrong_schema(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synsym.core.io import merge_cells

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"run": ["x"], "seed": [1.5]}), bad)
    with pytest.raises(ValueError, match="bad.parquet: written with another cell schema"):
        merge_cells([str(bad)], tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_atomic_write_leaves_nothing_when_killed(tmp_path):
    from synsym.core.io import atomic_path

    target = tmp_path / "cell.parquet"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        open(tmp, "w").write("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path):
    import json
    import subprocess
    import sys

    def train(spec: dict, arch: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "synsym.cli", "train", "--spec", json.dumps(spec), "--study", "grid",
                               "--inference", "nn", "--arch", arch, "--transform", "identity", "--width", "4", "--m", "10",
                               "--split", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o.parquet")],
                              capture_output=True, text=True)

    spec = {"run_name": "t", "global_seed": 0, "depth": 2, "seeds": [0], "device": "cpu", "padding": "zero", "training": {}}
    p = train(spec, "resnet")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["synsym train: error: unknown architecture 'resnet'; allowed: fcn, lcn, "
                                             "vec, gap, lap4, lap8"]
    # a spec without the padding a training job reads is refused at the boundary, before the split is opened
    p = train({k: v for k, v in spec.items() if k != "padding"}, "vec")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["synsym train: error: --spec lacks 'padding', which train reads; the rules' "
                                             "spec_json always writes it"]


@pytest.mark.slow
def test_deleting_one_kernel_shard_reruns_that_shard_alone(smoke):
    """The smoke preset's conv kernels come in 2 shard jobs. A deleted shard is an intermediate: the
    study stays up to date without it, and naming its folder reruns exactly that one kernel job,
    which writes the same stripes bit for bit. (Last in this module: it leaves a newer shard.)"""
    import shutil

    import numpy as np

    wd, args = smoke
    base = wd / "results/smoke/kernels/conv/identity/s0"
    assert sorted(p.name for p in base.iterdir()) == ["shard0", "shard1"]
    before = {f.name: np.load(f) for f in (base / "shard1").glob("*.npy")}
    shutil.rmtree(base / "shard1")
    assert dry_counts(*args, cwd=wd) == {}
    target = str((base / "shard1").relative_to(wd))
    assert dry_counts(target, *args, cwd=wd) == {"kernel": 1}
    snakemake("--cores", "2", target, *args, cwd=wd, timeout=900)
    after = {f.name: np.load(f) for f in (base / "shard1").glob("*.npy")}
    assert sorted(after) == sorted(before) and len(after) == 8
    assert all(np.array_equal(after[k], before[k]) for k in before)
