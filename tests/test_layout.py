"""The package's layout: the layers contract, what the DAG build imports, one definition per id,
one reader of benchmark paths, and the training loop's seed stack."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from helpers import ROOT, load_config

from synsym.core import architectures as A
from synsym.finite import models as M
from synsym.finite import training as TR
from synsym.pipeline import jobs as J


def test_layers_contract_holds():
    """import-linter (pyproject.toml): no upward import between subpackages, no cycle inside one."""
    exe = Path(sys.executable).with_name("lint-imports")
    p = subprocess.run([str(exe)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "2 kept, 0 broken" in p.stdout


def test_dag_build_and_config_import_no_torch_and_no_study():
    """What common.smk imports at every DAG build (and every Slurm job's parse) stays light: of the study layer
    only its figure-inputs table (study.inputs, no imports of its own)."""
    code = ("import sys; from synsym.pipeline import calibration, config, cost, jobs, plan, slurm; "
            "from synsym.imagenet import cells, data, registry; from synsym.study.inputs import FIGURE_TABLES; "
            "config.validate(config.load_config([])); "
            "light = ('synsym.study', 'synsym.study.inputs'); "
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('synsym.study') and m not in light); "
            "print(bad)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]", p.stdout


def test_imagenet_registry_and_builders_name_the_same_models():
    from synsym.imagenet import models, registry

    assert set(registry.MODELS) == set(models.BUILDERS)


def test_every_job_reads_back_from_its_benchmark_path():
    """Each compute job of the paper plan, written to its rule's benchmark pattern, parses back
    to the same job; a kernel cell's path is never taken for a training cell; other files are None."""
    cfg = load_config("presets/paper.yaml")
    jobs = J.jobs(cfg)
    assert {j.rule for j in jobs} == {"prepare", "kernel", "kernel_cell", "scaling_cells", "train_cell"}
    for job in jobs:
        path = J.benchmark("results/paper", job.rule).format(**job.wildcards)
        assert J.parse_benchmark(path, "results/paper") == job, path
    assert J.parse_benchmark("r/benchmarks/cells/grid/ntk/vec/identity/winf_m9.tsv", "r").rule == "kernel_cell"
    assert J.parse_benchmark("r/benchmarks/imagenet/resnet50/identity/i2/s0.tsv", "r").rule == "imagenet_train"
    assert J.parse_benchmark("r/benchmarks/cells/grid/xx/vec/identity/w8_m9.tsv", "r") is None


def test_bench_preset_files_each_job_under_its_rule(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import preset

    rows = {"prepare.tsv": 1.0, "kernel/conv/identity/s0/shard1.tsv": 2.0, "cells/grid/ntk/gap/o_3d/winf_m8.tsv": 3.0,
            "cells/scaling/gap/o_3d.tsv": 4.0, "cells/grid/nn/gap/o_3d/w8_m8.tsv": 5.0}
    for rel, s in rows.items():
        f = tmp_path / "benchmarks" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"s\th:m:s\tmax_rss\n{s}\t0:00:01\t{10 * s}\n")
    df = preset.load(tmp_path).set_index("s")
    assert df["rule"].to_dict() == {1.0: "prepare", 2.0: "kernel", 3.0: "kernel_cell", 4.0: "scaling_cells", 5.0: "train_cell"}
    assert df["max_rss_mb"].to_dict() == {s: 10 * s for s in rows.values()}


def _fit_some_seeds_early(drop: bool) -> tuple[dict, dict]:
    """FCN, 3 seeds, a low stop accuracy: seed 2 stops at step 40, the others train to the cap."""
    spec, n = A.get("fcn"), 40
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, n, 8, 8, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (n,), generator=g)
    xt = torch.randn(3, 16, 8, 8, 3, generator=g, dtype=torch.float64)
    yt = torch.randint(0, 10, (16,), generator=g)
    data = {"x_train": x, "y_train": y, "x_val": xt, "y_val": yt, "x_test": xt, "y_test": yt}
    batches = np.stack([TR.batch_indices(0, s, n, 8, 300) for s in range(3)])
    p = M.init_params(spec, 32, 3, 8, [0, 1, 2], 0, torch.float64, "cpu")
    lr = TR.eta0_from_lambda(TR.estimate_lambda_max(spec, p, x[:, :16], 3), 16, 0.9).mean() * 8
    cfg = TR.TrainConfig(max_steps=300, eval_every=20, batch_size=8, stop_train_acc=0.6, drop_stopped=drop)
    return TR.train(spec, p, data, 3, lr, 1e-7, batches, cfg, log=lambda m: None), p


def test_dropping_stopped_seeds_from_the_stack_changes_nothing():
    """Repacking the live seeds (Stack.pack / unpack) is exact: the results and every final
    parameter equal a run that keeps the stopped seed in the stack, masked, bit for bit."""
    (a, pa), (b, pb) = _fit_some_seeds_early(True), _fit_some_seeds_early(False)
    assert len(set(a["steps"].tolist())) > 1  # seeds stopped at different steps: the stack was repacked
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


def test_tracker_keeps_the_test_accuracy_at_the_best_validation_step():
    cfg = TR.TrainConfig(accept_train_acc=0.5)
    tr = TR.Tracker(2)
    live = torch.arange(2)
    logits = torch.zeros(2, 3, 10)
    ev = lambda t, v, te: {"train": (None, torch.tensor(t, dtype=torch.float64)),  # noqa: E731
                           "val": (None, torch.tensor(v, dtype=torch.float64)),
                           "test": (logits, torch.tensor(te, dtype=torch.float64))}
    assert tr.update(10, live, ev([0.4, 0.6], [0.3, 0.5], [0.2, 0.4]), cfg).tolist() == [True, True]
    tr.update(20, live, ev([0.7, 0.5], [0.2, 0.6], [0.9, 0.1]), cfg)
    r = tr.result()
    assert r["val_acc"].tolist() == [0.3, 0.6]
    assert r["test_acc"].tolist() == [0.2, 0.1]  # at the best validation step, not the best test
    assert r["test_acc_best"].tolist() == [0.9, 0.4]
    assert r["fit_step"].tolist() == [20, 10] and r["train_best"].tolist() == [0.7, 0.6]


def test_every_relative_link_in_readme_and_docs_resolves():
    """README.md and docs/*.md link only to files that exist (anchors and web links aside); README stays a
    one-sitting read without commit hashes, and docs/README.md indexes every page."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert not re.search(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", readme), "a commit hash in README"
    index = (ROOT / "docs" / "README.md").read_text()
    assert {p.name for p in pages[1:] if p.name != "README.md"} <= set(re.findall(r"\]\(([\w.-]+\.md)\)", index))


def test_cell_and_kernel_paths_read_back_to_their_wildcards():
    """The S-Dist and symmetry commands read ids from paths through jobs.parse_cell / parse_kernel_shard, the
    inverses of cell_path and KERNEL_SHARD: every paper-scale cell and shard round-trips; a stray path is refused."""
    import pytest

    cfg = load_config("presets/paper.yaml")
    for study in J.studies(cfg):
        for st, inf, arch, t, width, m in J.study_keys(cfg, study):
            got = J.parse_cell(J.cell_path(cfg, st, inf, arch, t, width, m))
            want_w = "inf" if inf in A.KERNEL_INFERENCES else str(width)
            assert got == {"study": st, "inference": inf, "arch": arch, "transform": t, "width": want_w, "m": str(m),
                           "ext": ".parquet"}
    assert J.parse_cell("r/cells/sdist/nn_plus/vec/so3_path-t0.5/w4_m60.pred.npz")["transform"] == "so3_path-t0.5"
    for d in J.kernel_shards(cfg, "conv", "o3_per_pixel", [0, 3]):
        w = J.parse_kernel_shard(d)
        assert d.endswith(f"kernels/conv/o3_per_pixel/s{w['seed']}/shard{w['shard']}") and w["family"] == "conv"
    with pytest.raises(ValueError, match="not a cell path"):
        J.parse_cell("r/cells/grid/ntk/vec/identity/w8.parquet")
