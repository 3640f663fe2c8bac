"""One job spec, resolved where the job starts (synsym.core.jobspec), and no study setting defaulted below it."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synsym.core import architectures as A
from synsym.core import jobspec
from synsym.core.device import kernel_device
from synsym.finite import models as M

SRC = Path(__file__).resolve().parents[1] / "src" / "synsym"
# Settings that change a result and that a job's spec carries: no function below the command line may default them.
SETTINGS = {"padding", "precision", "device"}


def defaulted_settings(path: Path) -> list[str]:
    """``file:line function(name=default)`` for every parameter in SETTINGS that has a default, and every class
    field of that name with one."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            pos = a.posonlyargs + a.args
            pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults))
            pairs += [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            out += [f"{path.name}:{node.lineno} {getattr(node, 'name', 'lambda')}({arg.arg}={ast.unparse(d)})"
                    for arg, d in pairs if arg.arg in SETTINGS]
        elif isinstance(node, ast.ClassDef):
            out += [f"{path.name}:{st.lineno} {node.name}.{st.target.id} = {ast.unparse(st.value)}" for st in node.body
                    if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.target.id in SETTINGS
                    and st.value is not None]
    return out


def test_no_default_padding_precision_or_device_below_the_command_line():
    found = [hit for sub in ("ntk", "finite", "study") for p in sorted((SRC / sub).glob("*.py")) for hit in defaulted_settings(p)]
    assert found == []


def test_the_scan_finds_a_default(tmp_path):
    """The scan above can fail: a parameter, a keyword-only parameter and a field with a default are all found."""
    f = tmp_path / "m.py"
    f.write_text("def f(x, padding='circular'):\n    pass\n\ndef g(*, device='cpu'):\n    pass\n\n"
                 "class C:\n    precision: str = 'float64'\n    width: int = 3\n\ndef h(padding, depth=2):\n    pass\n")
    assert defaulted_settings(f) == ["m.py:1 f(padding='circular')", "m.py:4 g(device='cpu')", "m.py:8 C.precision = 'float64'"]


SPEC = {"run_name": "t", "global_seed": 0, "depth": 2, "seeds": [0, 1], "device": "auto", "padding": "zero",
        "training": {"batch_size": 40}}


def test_load_resolves_device_and_freezes():
    s = jobspec.load(json.dumps(SPEC), "train")
    assert s["device"] == kernel_device("auto") and s["device"] in ("cpu", "cuda")
    assert s["padding"] == "zero" and s["seeds"] == (0, 1) and s["training"]["batch_size"] == 40
    with pytest.raises(TypeError):
        s["training"]["batch_size"] = 8  # read-only all the way down
    with pytest.raises(TypeError):
        s.settings["device"] = "cuda"
    assert json.loads(jobspec.dumps(s)) == {**SPEC, "device": s["device"]}
    assert jobspec.dumps(s) == jobspec.dumps({**SPEC, "device": s["device"]})  # frozen or plain: the same text


@pytest.mark.parametrize("patch,line", [
    ({"padding": None}, "--spec lacks 'padding', which train reads; the rules' spec_json always writes it"),
    ({"padding": "reflect"}, "model.padding = 'reflect' is invalid; allowed: circular, zero"),
    ({"device": "tpu"}, "unknown device 'tpu'; allowed: cpu, cuda, auto"),
])
def test_load_refuses_a_bad_spec_in_one_line(patch, line):
    spec = {k: v for k, v in {**SPEC, **patch}.items() if v is not None}
    with pytest.raises(ValueError) as e:
        jobspec.load(json.dumps(spec), "train")
    assert str(e.value) == line


def test_a_table_spec_has_no_padding_and_its_3x3_net_refuses_to_run():
    """The architecture table holds no padding; a run's spec gets one (get(arch, padding)), and a conv or local
    net built without one stops with the padding's one line instead of picking an edge."""
    assert A.ARCHITECTURES["gap"].padding is None and A.get("gap", "zero").padding == "zero"
    x = torch.as_tensor(np.zeros((1, 2, 4, 4, 3)))
    for arch in ("gap", "lcn"):
        p = M.init_params(A.get(arch), 2, 1, 4, [0], 0, torch.float64, "cpu")
        with pytest.raises(ValueError, match=r"^model.padding = None is invalid; allowed: circular, zero$"):
            M.apply(A.get(arch), p, x, 1)
    p = M.init_params(A.get("fcn"), 2, 1, 4, [0], 0, torch.float64, "cpu")
    assert M.apply(A.get("fcn"), p, x, 1).shape == (1, 2, 10)  # a dense net has no edges to pad


def test_a_toy_architecture_is_one_table_row(monkeypatch):
    """docs/add-an-architecture.md's steps 1-2: one ArchSpec row and its width make a new architecture the config
    accepts, the DAG runs (a training and a kernel cell), whose net trains and whose kernel is read. Without the
    row, the same config is refused in one line naming the allowed ids."""
    from helpers import load_config

    from synsym.ntk.kernels import kernel_key
    from synsym.pipeline import jobs as J
    from synsym.pipeline.config import ConfigError, validate

    cfg = load_config()
    cfg["model"]["widths"]["toy"] = 4
    cfg["grid"]["architectures"] = ["toy"]
    with pytest.raises(ConfigError, match=r"'toy' is invalid; allowed: fcn, lcn, vec, gap, lap4, lap8"):
        validate(cfg)
    toy = A.ArchSpec("toy", "TOY", "local", "flatten", 1, "conv", 8, "o3_per_pixel", "o3_per_pixel", kernel_readout="vec")
    monkeypatch.setitem(A.ARCHITECTURES, "toy", toy)
    validate(cfg)
    rules = {(j.rule, j.wildcards.get("arch")) for j in J.jobs(cfg)}
    assert {("train_cell", "toy"), ("kernel_cell", "toy")} <= rules
    assert kernel_key("toy") == "vec"
    spec = A.get("toy", "zero")
    p = M.init_params(spec, 4, 2, 4, [0], 0, torch.float64, "cpu")
    assert M.apply(spec, p, torch.as_tensor(np.zeros((1, 3, 4, 4, 3))), 2).shape == (1, 3, 10)


def test_the_kill_hook_is_off_unless_set_and_refuses_a_bad_value(monkeypatch):
    """core.faults.kill_point: unset or naming the other point, it returns; a malformed value stops in one line.
    (The kills themselves are tests/test_resume.py's and tests/test_imagenet.py's, in subprocesses.)"""
    from synsym.core import faults

    monkeypatch.delenv(faults.ENV, raising=False)
    faults.kill_point("step", 5)
    monkeypatch.setenv(faults.ENV, "checkpoint:3")
    faults.kill_point("step", 3)  # another point: alive
    faults.kill_point("checkpoint", 2)  # before N: alive
    monkeypatch.setenv(faults.ENV, "epoch:3")
    with pytest.raises(ValueError, match=r"^SYNSYM_KILL='epoch:3' is invalid; allowed: checkpoint:N or step:N$"):
        faults.kill_point("step", 1)
