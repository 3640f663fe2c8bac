"""Earlier revisions of the fused Triton kernel, loaded as modules beside this checkout's (for the benches).

``load(None)`` is this checkout's ``synsym.ntk.fused_triton``, as a fresh module; ``load("a63fa24")`` the
file at that git revision; ``load("some/file.py")`` a saved copy (a machine without the git history:
``git show REV:src/synsym/ntk/fused_triton.py > FILE`` where the history is). Timing or counting an old
kernel beside today's, in one run on one machine, is what makes a speed-up a measured ratio.
"""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = "src/synsym/ntk/fused_triton.py"


def source(spec: str | None) -> Path:
    """The kernel file for ``spec`` (None: this checkout's; an existing file; else a git revision), or
    SystemExit naming the spec when it is neither."""
    if spec is None:
        return ROOT / MODULE
    if Path(spec).is_file():
        return Path(spec)
    r = subprocess.run(["git", "-C", str(ROOT), "show", f"{spec}:{MODULE}"], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench: kernel {spec!r} is neither a file nor a git revision of this checkout "
                         f"({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'git failed'})")
    path = Path(tempfile.mkdtemp()) / f"fused_triton_{spec}.py"
    path.write_text(r.stdout)
    return path


def load(spec: str | None):
    """That kernel file as a fresh module (its own Triton kernels, compiled apart from this checkout's)."""
    path = source(spec)
    mod_spec = importlib.util.spec_from_file_location(f"fused_triton_{path.stem}_{abs(hash(str(path)))}", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod
