"""docs/config.md, generated from the config schema: every key with its type, default (the default preset,
config.yaml), what is allowed and the schema's description. The page is never edited by hand:
``python -m synsym.pipeline.config_reference --write docs/config.md`` rewrites it, and a test fails when
page and schema disagree."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import yaml

from synsym.pipeline.config import DEFAULT, SCHEMA, load_schema, study_root

HEADER = """# Configuration reference

Generated from `workflow/schemas/config.schema.yaml` by `python -m synsym.pipeline.config_reference --write
docs/config.md`; do not edit by hand (`tests/test_config.py` fails when this page and the schema disagree).
Defaults are the default preset's (`config.yaml`); a preset (`presets/*.yaml`) is merged on top, and
`--config key=value` on top of that. A bad value stops the run before any job with one line naming it.

| key | type | default | allowed | description |
|---|---|---|---|---|
"""


def _resolve(node: dict, schema: dict) -> dict:
    if "$ref" in node:
        return {**schema["$defs"][node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type(node: dict, schema: dict) -> str:
    if "enum" in node:
        return "one of"
    t = node.get("type", "")
    t = " or ".join(t) if isinstance(t, list) else t
    if t == "array" and "items" in node:
        return f"list of {_type(_resolve(node['items'], schema), schema) or 'values'}"
    return t


def _allowed(node: dict, schema: dict) -> str:
    if "enum" in node:
        return ", ".join(str(v) for v in node["enum"])
    if node.get("type") == "array" and "items" in node:
        inner = _allowed(_resolve(node["items"], schema), schema)
        return inner + (", unique" if node.get("uniqueItems") else "")
    bounds = [f"{name} {node[key]}" for key, name in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                                                      ("exclusiveMaximum", "<")) if key in node]
    if "pattern" in node:
        bounds.append(f"matches `{node['pattern']}`")
    return ", ".join(bounds)


def _default(config: dict | None, path: list[str], node: dict) -> str:
    value = config
    for p in path:
        if not isinstance(value, dict) or p not in value:
            return f"`{json.dumps(node['default'])}`" if "default" in node else "(none)"
        value = value[p]
    if isinstance(value, dict):
        return ""
    return f"`{json.dumps(value)}`"


def rows(schema: dict, defaults: dict) -> list[tuple[str, str, str, str, str]]:
    """(key, type, default, allowed, description) of every property, depth first in the schema's order."""
    out = []

    def walk(node: dict, path: list[str]) -> None:
        for key, child in node.get("properties", {}).items():
            child = _resolve(child, schema)
            p = [*path, key]
            out.append((".".join(p), _type(child, schema), _default(defaults, p, child), _allowed(child, schema),
                        child.get("description", "")))
            walk(child, p)

    walk(schema, [])
    return out


def markdown(schema: dict, defaults: dict) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    body = [f"| `{k}` | {cell(t)} | {cell(d)} | {cell(a)} | {cell(desc)} |\n" for k, t, d, a, desc in rows(schema, defaults)]
    return HEADER + "".join(body)


def default_page() -> str:
    root = study_root()
    schema = load_schema(root / SCHEMA)
    defaults = yaml.safe_load((root / DEFAULT).read_text())
    return markdown(schema, defaults)


def page_main(prog: str, page: Callable[[], str], argv: list[str] | None = None) -> int:
    """The command line of a generated docs page (this one, docs/bill.md): print it, or --write it to a file."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--write", help="write the page here (default: print it)")
    a = p.parse_args(argv)
    text = page()
    if a.write:
        Path(a.write).write_text(text)
    else:
        print(text, end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    return page_main("python -m synsym.pipeline.config_reference", default_page, argv)


if __name__ == "__main__":
    raise SystemExit(main())
