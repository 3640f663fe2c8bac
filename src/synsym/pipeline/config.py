"""Config validation: the JSON schema plus the checks a schema cannot express.

Every failure is one line naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from synsym.core.architectures import ARCHITECTURES
from synsym.imagenet import registry as imagenet_registry

SCHEMA = Path("workflow") / "schemas" / "config.schema.yaml"  # relative to the study's root (study_root)
DEFAULT = Path("config.yaml")


class ConfigError(ValueError):
    pass


def study_root(start: str | Path | None = None, presets: list[str] = ()) -> Path:
    """The study's folder: the nearest of ``start`` (default: ``SYNSYM_ROOT``, else the working directory)
    and its parents holding ``Snakefile`` and ``config.yaml``, else the one a preset file lies in. The package
    never looks beside its own files, which an installed wheel would not have: like ``snakemake``, it works
    from the folder it is run in, or the study a preset names."""
    import os

    here = Path(start or os.environ.get("SYNSYM_ROOT") or Path.cwd()).resolve()
    for top in (here, *(Path(p).resolve().parent for p in presets)):
        for d in (top, *top.parents):
            if (d / "Snakefile").is_file() and (d / DEFAULT).is_file():
                return d
    raise ConfigError(f"{here}: not inside the study (no folder with Snakefile and config.yaml); "
                      "run from the repository's root or set SYNSYM_ROOT to it")


def _allowed(err) -> str:
    s = err.schema
    if "enum" in s:
        return f"allowed: {', '.join(map(str, s['enum']))}"
    if err.validator == "additionalProperties":
        return f"allowed keys: {', '.join(err.schema.get('properties', {}))}"
    if err.validator == "required":
        return ""
    return f"must satisfy {err.validator}={err.validator_value!r}"


def load_config(configfiles: list[str], root: str | Path | None = None) -> dict:
    """The study's config.yaml with presets merged on top, as ``snakemake --configfile`` does; validated."""
    from snakemake.utils import update_config

    root = study_root(root, configfiles)
    config = yaml.safe_load((root / DEFAULT).read_text())
    for f in configfiles:
        update_config(config, yaml.safe_load(Path(f).read_text()))
    return validate(config, root / SCHEMA)


def _from_cli(cli: dict | None, path) -> bool:
    """Whether ``path`` names a string that came from ``snakemake --config`` (``cli``)."""
    node = cli
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return False
        node = node[p]
    return isinstance(node, str)


def _coerce(config: dict, errors: list, cli: dict | None) -> bool:
    """Type the strings that ``snakemake --config`` (``cli``) passes, as a YAML file would have typed them:
    snakemake reads nested values with YAML's BaseLoader, so ``training={"batch_size": -1}`` arrives as "-1".
    Only where the schema rejected such a string; True if any changed, so validation runs again and reports
    the value's real fault (a bound, an enum) rather than its type. A file's quoted string stays a string."""
    changed = False
    for e in errors:
        if isinstance(e.instance, str) and e.path and _from_cli(cli, e.path):
            typed = yaml.safe_load(e.instance)
            if not isinstance(typed, str):
                parent = config
                for p in list(e.path)[:-1]:
                    parent = parent[p]
                parent[e.path[-1]] = typed
                changed = True
    return changed


def load_schema(path: str | Path) -> dict:
    """The config schema with the architecture table filled in: its ids (``$defs.arch``) and one required,
    described ``model.widths`` entry each, so an architecture is added by its ArchSpec row alone."""
    schema = yaml.safe_load(Path(path).read_text())
    schema["$defs"]["arch"]["enum"] = list(ARCHITECTURES)
    widths = schema["properties"]["model"]["properties"]["widths"]
    widths["required"] = list(ARCHITECTURES)
    widths["properties"] = {a.id: {"description": f"{a.label} {'units' if a.body == 'dense' else 'channels'} per hidden "
                                                  f"layer (the paper: {a.paper_width})"} for a in ARCHITECTURES.values()}
    return schema


def validate(config: dict, schema_path: str | Path | None = None, cli: dict | None = None) -> dict:
    """Raise ConfigError (one line) unless ``config`` is a valid study config; ``schema_path``: default the
    study root's schema (study_root); ``cli``: the ``--config`` overrides, whose strings are typed in
    place first (see _coerce)."""
    import jsonschema

    schema = load_schema(schema_path or study_root() / SCHEMA)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    while errors and _coerce(config, errors, cli):
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        key = ".".join(str(p) for p in e.path) or "<top>"
        if e.validator == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            raise ConfigError(f"config: unknown key {'.'.join([*map(str, e.path), extra[0]])!r}; {_allowed(e)}")
        if e.validator == "required":
            raise ConfigError(f"config: {key}: {e.message}")
        raise ConfigError(f"config: {key} = {e.instance!r} is invalid; {_allowed(e)}")
    d = config["data"]
    for a in ARCHITECTURES.values():
        if a.readout == "lap" and d["image_size"] % a.pool:
            raise ConfigError(f"config: data.image_size = {d['image_size']} is not a multiple of {a.pool} ({a.id})")
    if config["imagenet"]["root"]:  # the ImageNet section is checked when the half is on
        try:
            imagenet_registry.validate(config["imagenet"])
        except ValueError as e:
            raise ConfigError(f"config: {e}") from None
    too_big = [m for m in config["curves"]["sizes"] if m > d["n_train"]]
    if too_big:
        raise ConfigError(f"config: curves.sizes {too_big} exceed data.n_train = {d['n_train']}; allowed: <= n_train")
    return config


def mini_archive(url: str | None, md5: str | None, out: str, download_dir: str) -> Path:
    """``synsym mini-archive``: the tests' mini CIFAR-10 built from the official archive (config.yaml's url and md5
    unless given), in the official format under ``out`` with its MANIFEST; the archive's path."""
    import sys

    from synsym.core import data

    if not (url and md5):
        official = load_config([])["data"]
        url, md5 = url or official["url"], md5 or official["md5"]
    archive, got = data.make_mini_archive(data.download(url, md5, download_dir), out)
    print(f"mini archive md5 {got} (also in {Path(out) / 'MANIFEST'})", file=sys.stderr)
    return archive
