"""Every shell command in README.md and docs/*.md works as written.

Commands are taken from ```bash blocks and from inline code that starts with a command word. A token written
<like this> (or [--optional], usage notation) is a placeholder: it is not checked, and a command holding one is
only resolved, never run. Then, by command:
- snakemake: every flag is one Snakemake knows, and the command runs as a dry run (`-n`, the profile and Slurm-only
  flags left out) unless it holds a placeholder or makes a report;
- python -m MODULE / python SCRIPT: the module or script exists, and every flag appears in its --help (with the
  subcommand words before the first flag, e.g. `synsym.cli plan --help`);
- every other command (bash, rm, cp, ...): each argument that names a file of the repository exists.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, SNAKEMAKE, snakemake

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WORDS = ("snakemake", "python", "bash", ".venv/bin/")
# a dry run leaves the profile out: it sends jobs to Slurm, and the DAG does not depend on it
SUBMIT_ONLY = {"--profile"}  # `--profile slurm` is the installed copy of profiles/slurm (README); its folder must exist
ALWAYS_RESOLVED = ("rm", "mkdir", "cp", "ln", "squeue", "sacct", "sudo", "cd", ".", "source")


def commands(text: str) -> list[str]:
    """Shell commands of one page: lines of ```bash blocks (continuations joined, && chains split) and inline
    code that starts with a command word."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            found += [part.strip() for part in line.split("&&")]
    for code in re.findall(r"`([^`\n]*(?:\n[^`\n]*)?)`", text):
        code = " ".join(code.split())
        if code.startswith(WORDS) and " " in code:
            found.append(code)
    return [c for c in (strip_comment(c) for c in found) if c]


def strip_comment(cmd: str) -> str:
    try:
        return shlex.join(shlex.split(cmd, comments=True))
    except ValueError:
        return cmd.strip()


def is_placeholder(token: str) -> bool:
    return bool(re.search(r"<[^>]*>", token)) or token.startswith("[") or token.endswith("]")


def documented() -> list[tuple[str, str]]:
    return sorted({(p.relative_to(ROOT).as_posix(), c) for p in PAGES for c in commands(p.read_text())})


@functools.cache
def help_text(*command: str) -> str:
    p = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, f"{' '.join(command)} --help failed: {p.stderr[-1500:]}"
    return p.stdout


@functools.cache
def snakemake_flags() -> frozenset[str]:
    p = subprocess.run([SNAKEMAKE, "--help"], capture_output=True, text=True, timeout=300)
    return frozenset(re.findall(r"(--[a-z][a-z0-9-]*)", p.stdout))


def flags(tokens: list[str]) -> list[str]:
    return [t.split("=")[0] for t in tokens if t.startswith("--") and not is_placeholder(t)]


def check_paths(tokens: list[str]) -> None:
    """Arguments that name a repository file (a top-level folder of it, or a file at its root) must exist; an
    output (the value of --out) needs only its folder."""
    tops = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")} - {"results", "data"}
    for prev, t in zip(["", *tokens], tokens):
        if is_placeholder(t) or t.startswith("-"):
            continue
        if t.split("/")[0] in tops and ("/" in t or (ROOT / t).is_file()):
            path = ROOT / t.rstrip("/")
            assert path.exists() or (prev == "--out" and path.parent.is_dir()), f"no {t} in the repository"


def dry_run_args(tokens: list[str]) -> list[str] | None:
    """The command's arguments for `snakemake -n`, or None where it is only resolved (a placeholder, a report)."""
    if any(is_placeholder(t) for t in tokens) or "--report" in tokens or "--unlock" in tokens:
        return None
    args, i = [], 0
    while i < len(tokens):
        t = tokens[i]
        if t in SUBMIT_ONLY:
            assert (ROOT / "profiles" / Path(tokens[i + 1]).name).is_dir(), f"no profile {tokens[i + 1]} (profiles/)"
            i += 2
            continue
        args.append(t)
        i += 1
    return args


@functools.cache
def dry_run(args: tuple[str, ...], workdir: Path) -> str:
    """Snakemake's complaint about a dry run of these arguments ("" when it passes); once per distinct command."""
    p = snakemake("-n", *args, check=False, timeout=600, cwd=workdir)
    return "" if p.returncode == 0 else (p.stdout + p.stderr)[-2000:]


CASES = documented()


def test_the_pages_have_commands_to_check():
    """The extraction finds the commands a newcomer copies (a regex that finds nothing would pass everything)."""
    cmds = {c for _, c in CASES}
    assert "bash scripts/test.sh" in cmds and any(c.startswith("snakemake --profile slurm") for c in cmds)
    assert sum(c.startswith("python") for c in cmds) >= 10 and len(CASES) >= 40


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, imagenet_tree) -> Path:
    """Where the dry runs run: a folder that sees the repository's presets, profiles and calibrations, with
    docs/imagenet.md's first step done (`ln -s <imagenet folder> data/imagenet`, a small real ImageNet-layout tree)."""
    wd = tmp_path_factory.mktemp("docs")
    for name in ("presets", "profiles", "calibrations", "config.yaml"):
        (wd / name).symlink_to(ROOT / name)
    (wd / "data").mkdir()
    (wd / "data" / "imagenet").symlink_to(imagenet_tree)
    return wd


@pytest.mark.slow
@pytest.mark.parametrize("page,cmd", CASES, ids=[f"{p}:{c[:60]}" for p, c in CASES])
def test_documented_command(page, cmd, workdir):
    tokens = shlex.split(cmd)
    if tokens[0].startswith(".venv/bin/"):
        tokens[0] = tokens[0].removeprefix(".venv/bin/")
    word = tokens[0]
    check_paths(tokens)
    if word == "snakemake":
        unknown = set(flags(tokens)) - snakemake_flags()
        assert not unknown, f"{page}: snakemake does not know {sorted(unknown)}"
        args = dry_run_args(tokens[1:])
        if args is not None:
            err = dry_run(tuple(args), workdir)
            assert not err, f"{page}: `{cmd}` fails as a dry run:\n{err}"
    elif word in ("python", "python3"):
        if tokens[1] == "-c":
            compile(tokens[2], "<doc>", "exec")
            return
        if tokens[1] == "-m":
            mod, rest = tokens[2], tokens[3:]
            head = ["-m", mod]
        else:
            assert (ROOT / tokens[1]).is_file(), f"{page}: no script {tokens[1]}"
            head, rest = [tokens[1]], tokens[2:]
        sub = []
        for t in rest:  # subcommand words before the first flag (synsym.cli plan, imagenet cost)
            if t.startswith("-") or is_placeholder(t) or "/" in t or "." in t:
                break
            sub.append(t)
        if head == ["-m", "pytest"]:
            return
        text = help_text(*head, *sub)
        missing = [f for f in flags(rest) if f not in text]
        assert not missing, f"{page}: `{' '.join(head + sub)}` has no {missing}"
    else:
        assert word in ("bash", *ALWAYS_RESOLVED), f"{page}: a command this test cannot check: {cmd}"
