"""Config schema, presets, pins: one source of truth for every id and version."""

import re

import pytest
import yaml
from helpers import ROOT, snakemake
from helpers import load_config as load

from synsym.core import architectures as A
from synsym.core import transforms as T
from synsym.core.io import CELL_SCHEMA
from synsym.pipeline.config import ConfigError, load_schema, validate


def test_schema_ids_are_the_package_ids():
    schema = load_schema(ROOT / "workflow/schemas/config.schema.yaml")["$defs"]
    assert schema["arch"]["enum"] == list(A.ARCHITECTURES)
    assert schema["inference"]["enum"] == list(A.INFERENCES)
    assert schema["finite_inference"]["enum"] == list(A.FINITE_INFERENCES)
    assert schema["transform"]["enum"] == list(T.TRANSFORMS)


OVERLAYS = {"imagenet": "paper", "synergy-fig4": "synergy-fig2-identity"}  # presets meant to be stacked on another (README: presets)


@pytest.mark.parametrize("name", ["default"] + sorted(p.stem for p in (ROOT / "presets").glob("*.yaml")))
def test_presets_validate_and_have_their_own_run_name(name):
    """Every preset in presets/ validates; each standalone one writes under results/<its own file name>."""
    stack = [] if name == "default" else [f"presets/{n}.yaml" for n in (OVERLAYS.get(name), name) if n]
    cfg = validate(load(*stack))
    assert cfg["run_name"] == OVERLAYS.get(name, name)


def test_paper_preset_is_the_paper():
    cfg = load("presets/paper.yaml")
    d = cfg["data"]
    assert (d["image_size"], d["n_train"], d["n_val"], d["n_test"]) == (32, 45000, 5000, 10000)
    assert cfg["model"]["depth"] == 8 and len(cfg["seeds"]) == 5
    assert cfg["model"]["widths"] == {a: s.paper_width for a, s in A.ARCHITECTURES.items()}
    assert cfg["training"]["max_steps"] == 10**6 and cfg["training"]["batch_size"] == 40
    assert cfg["training"]["max_steps_nn"] is None  # not the default preset's 24,000
    assert cfg["width_sweep"]["widths"] == [2**k for k in range(3, 11)]
    assert cfg["curves"]["sizes"][0] == 320 and cfg["curves"]["sizes"][-1] == 45000


@pytest.mark.parametrize(
    "patch,needle",
    [
        ({"device": "tpu"}, "device = 'tpu' is invalid; allowed: cpu, cuda, auto"),
        ({"data": {"image_size": 12}}, "data.image_size = 12 is invalid; allowed: 8, 16, 32"),
        ({"grid": {"architectures": ["fcn", "resnet"]}}, "'resnet' is invalid; allowed: fcn, lcn"),
        ({"grid": {"transforms": ["identity", "o4"]}}, "'o4' is invalid; allowed: identity"),
        ({"training": {"max_step": 3}}, "unknown key 'training.max_step'"),
        ({"training": {"batch_size": "forty"}}, "training.batch_size = 'forty' is invalid"),
        ({"training": {"eta0_momentum": "yes"}}, "training.eta0_momentum = 'yes' is invalid"),
        ({"data": {"n_train": 64}, "curves": {"sizes": [32, 128]}}, "curves.sizes [128] exceed data.n_train = 64"),
    ],
)
@pytest.mark.slow
def test_bad_config_is_one_line_before_any_job(tmp_path, patch, needle):
    from snakemake.utils import update_config

    cfg = load()
    update_config(cfg, patch)
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert needle in str(e.value) and "\n" not in str(e.value)
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(patch))
    p = snakemake("-n", "--configfile", str(f), check=False)
    assert p.returncode != 0
    assert needle in p.stderr and "Job stats" not in p.stdout + p.stderr


def pins(text):
    return dict(re.findall(r"^\s*(?:- )?([A-Za-z0-9_.-]+)==([^\s#]+)", text, re.M))


def test_conda_env_pins_equal_requirements():
    req = pins((ROOT / "requirements.txt").read_text())
    env = pins((ROOT / "envs/study.yaml").read_text())
    assert req["jax"] == req["jaxlib"] == "0.4.30" and req["neural-tangents"] == "0.6.5" and req["tf2jax"] == "0.3.6"
    assert (req["torch"], req["torchvision"], req["timm"], req["triton"]) == ("2.14.1", "0.29.1", "1.0.31", "3.8.0")
    for name, version in env.items():
        assert req.get(name) == version, name
    assert {"jax", "jaxlib", "neural-tangents", "torch", "tf2jax"} <= set(env)


def test_installed_versions_match_pins():
    from importlib.metadata import version

    req = pins((ROOT / "requirements.txt").read_text())
    for name in ("jax", "jaxlib", "neural-tangents", "tf2jax", "snakemake"):
        assert version(name) == req[name]
    assert version("torch").split("+")[0] == req["torch"]


def test_cell_schema_has_the_contract_columns():
    need = ("run study inference architecture transform width depth n_train n_val n_test image_size seed lr l2 "
            "steps train_acc val_acc test_acc test_acc_best test_mse accepted wall_s device code_version").split()
    assert [c for c in need if c not in CELL_SCHEMA.names] == []


def test_nn_has_its_own_step_cap():
    from synsym.finite.training import train_config

    tr = load()["training"]
    assert (tr["max_steps"], tr["max_steps_nn"]) == (8000, 24000)  # the default preset's caps
    assert train_config(tr, "nn").max_steps == 24000 and train_config(tr, "nn_plus").max_steps == 8000
    tr = {**tr, "max_steps_nn": None}
    assert train_config(tr, "nn").max_steps == train_config(tr, "nn_plus").max_steps == tr["max_steps"]
    tr = {**tr, "max_steps": 300, "max_steps_nn": 7000}
    assert train_config(tr, "nn").max_steps == 7000 and train_config(tr, "nn_plus").max_steps == 300


def test_eta0_reading_is_the_config_key():
    """training.eta0_momentum picks what neural-tangents' max_learning_rate is given: the momentum
    (eta0 = 2 (1 + mu) m / lambda_max) or 0 (2 m / lambda_max), 1.9x apart at mu = 0.9."""
    import torch

    from synsym.finite import training as TR

    tr = load()["training"]
    lam = torch.tensor([4.0])
    with_mu = TR.train_config({**tr, "eta0_momentum": True}, "nn_plus")
    plain = TR.train_config({**tr, "eta0_momentum": False}, "nn_plus")
    a, b = (TR.eta0_from_lambda(lam, 64, c.eta0_mu) for c in (with_mu, plain))
    assert float(a) == pytest.approx(2 * 1.9 * 64 / 4) and float(b) == pytest.approx(2 * 64 / 4)


@pytest.mark.parametrize("override,needle", [
    ('training={"batch_size": -1}', "training.batch_size = -1 is invalid; must satisfy minimum=1"),
    ('device=tpu', "device = 'tpu' is invalid; allowed: cpu, cuda, auto"),
])
@pytest.mark.slow
def test_command_line_override_reports_the_real_fault(override, needle):
    """`--config` values reach the config as strings (snakemake's BaseLoader); a bad one must report the fault a
    config file would (the bound), on one line, not "'-1' must satisfy type='integer'"."""
    p = snakemake("-n", "--config", override, check=False)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].strip().endswith(needle) and not any("Traceback" in ln for ln in lines), p.stderr[-2000:]


@pytest.mark.slow
def test_a_good_command_line_override_is_typed():
    p = snakemake("-n", "--config", 'training={"batch_size": 20}', check=False)
    assert p.returncode == 0, p.stderr[-2000:]


def test_every_schema_key_is_described_and_docs_config_is_current():
    """Every property of the config schema has a description, and docs/config.md is the page generated from
    the schema and the default preset (python -m synsym.pipeline.config_reference --write docs/config.md)."""
    from synsym.pipeline import config_reference as CR

    schema = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    rows = CR.rows(schema, yaml.safe_load((ROOT / "config.yaml").read_text()))
    assert len(rows) > 100 and not [k for k, *_, d in rows if not d.strip()]
    assert {"model.padding", "kernel_curves.paddings", "imagenet.decoder", "training.batch_size"} <= {r[0] for r in rows}
    assert (ROOT / "docs/config.md").read_text() == CR.default_page(), "docs/config.md is stale: regenerate it"


def test_the_package_finds_the_study_from_where_it_runs_not_beside_its_files(tmp_path):
    """The schema and default config are the study's (root Snakefile, config.yaml), found from the working
    folder as snakemake finds them; outside the study the one line says so rather than a traceback."""
    from synsym.pipeline.config import ConfigError, study_root

    assert study_root(ROOT / "tests") == ROOT
    assert (ROOT / "Snakefile").is_file() and (ROOT / "config.yaml").is_file() and (ROOT / "envs/study.yaml").is_file()
    with pytest.raises(ConfigError, match=f"^{tmp_path}: not inside the study"):
        study_root(tmp_path)
