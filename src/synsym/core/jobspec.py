"""A job's settings, resolved once where the job starts and carried from there as one frozen object.

A rule hands its job the part of the config the job depends on as JSON (``--spec``; the rules'
``spec_json`` writes it from the validated config, schema defaults applied). :func:`load` turns it
into a :class:`JobSpec` at the command line: every setting the command reads is present (or the job
stops with one line), the padding is a known one, and ``device: auto`` is resolved to the device the
job will use. Below the command line nothing re-derives a setting or falls back on a default, so a
forgotten argument fails loudly instead of silently changing a result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from synsym.core.architectures import check_padding
from synsym.core.device import kernel_device

# The settings each command reads from its spec (the rules' spec_json writes them all).
REQUIRED: dict[str, tuple[str, ...]] = {
    "prepare": ("global_seed", "data"),
    "transform-figures": ("global_seed", "data", "seed", "ts"),
    "kernel": ("global_seed", "depth", "padding", "device", "kernels"),
    "kernel-curves": ("global_seed", "depth", "device", "kernels", "ridges", "kernel_curves"),
    "kernel-cell": ("run_name", "depth", "device", "ridges", "seeds"),
    "train": ("run_name", "global_seed", "depth", "padding", "device", "seeds", "training"),
    "symmetry": ("global_seed", "depth", "padding", "device", "kernels", "seed"),
}


def _freeze(value: Any) -> Any:
    """Read-only all the way down: mappings behind a proxy, lists as tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """The JSON-able form of a frozen value (json.dumps' ``default``)."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@dataclass(frozen=True)
class JobSpec(Mapping[str, Any]):
    """One job's settings, read-only; read as a mapping (``spec["training"]["batch_size"]``)."""

    settings: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.settings)

    def __len__(self) -> int:
        return len(self.settings)


def dumps(obj: Any) -> str:
    """Canonical JSON of settings that may hold frozen parts (a JobSpec or plain dicts alike)."""
    return json.dumps(obj, sort_keys=True, default=_plain)


def load(text: str | Mapping, command: str) -> JobSpec:
    """The spec of ``command`` from its JSON, checked and resolved before any work (ValueError, one line)."""
    try:
        spec = json.loads(text) if isinstance(text, str) else dict(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--spec is not JSON ({e}); the rules' spec_json writes it") from None
    if not isinstance(spec, dict):
        raise ValueError(f"--spec is a JSON {type(spec).__name__}; it must be an object of settings")
    missing = [k for k in REQUIRED.get(command, ()) if k not in spec]
    if missing:
        raise ValueError(f"--spec lacks {missing[0]!r}, which {command} reads; the rules' spec_json always writes it")
    if "padding" in spec:
        check_padding(spec["padding"])
    if "device" in spec:
        spec["device"] = kernel_device(spec["device"])  # auto -> cpu or cuda; cuda without a GPU stops here
    return JobSpec(_freeze(spec))
