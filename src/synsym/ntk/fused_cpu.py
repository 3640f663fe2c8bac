"""Build and load the fused C++ kernel (fused_cpu.cpp): all layers of one (pair, delta)
slice in L1 cache, only the readouts kept, since slices never interact."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

_FUSED: dict = {}


def _isa_flags() -> tuple[str, list[str]]:
    """The widest x86-64 level this CPU runs (v4 has AVX-512, where libmvec's acos
    is 8 doubles wide), as a build-name tag and compiler flags. Keyed into the
    extension's name so machines sharing a home directory never load a build
    their CPU cannot run."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return "generic", []
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        return "generic", []
    if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags:
        return "v4", ["-march=x86-64-v4"]
    if {"avx2", "fma", "bmi2"} <= flags:
        return "v3", ["-march=x86-64-v3"]
    return "generic", []


def _build(name: str, flags: list[str]):
    """Compile (or load the cached build of) fused_cpu.cpp under an OS file lock.

    torch's own build lock is a plain file: a build killed midway (Ctrl-C, a
    job timeout) leaves it behind and every later build waits on it forever.
    An flock dies with its process, so whoever holds ours may delete that stale
    file: nobody else can be building."""
    import fcntl

    from torch.utils.cpp_extension import get_default_build_root, load_inline

    build = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / name
    build.mkdir(parents=True, exist_ok=True)
    with open(build / "synsym.flock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        (build / "lock").unlink(missing_ok=True)
        return load_inline(
            name=name,
            cpp_sources=(Path(__file__).parent / "fused_cpu.cpp").read_text(),
            functions=["conv_stack", "conv_stack_zero"],
            extra_cflags=["-O3", "-ffast-math", "-fopenmp-simd", *flags],
            build_directory=str(build),
        )


def build_name(tag: str) -> str:
    """The build's folder name: the ISA tag and a hash of the torch it compiles against. Two environments on
    one machine (a checkout's venv and a CI clone's) then keep two builds: with one shared folder, each
    load from the other environment rewrites build.ninja (its include paths) and rebuilds, tens of seconds
    a job (measured: smoke conv kernel jobs of 3-4 s took 50-87 s while another venv ran beside them)."""
    import hashlib

    import torch

    return f"synsym_fused_cpu_{tag}_{hashlib.sha1(str(Path(torch.__file__).parent).encode()).hexdigest()[:8]}"


def fused_kernel():
    """The compiled fused CPU kernel (src/synsym/ntk/fused_cpu.cpp), or None if it cannot be built.

    ``SYNSYM_FUSED=0`` in the environment forces the eager path (benchmarks,
    debugging). Built once per machine with torch's cpp_extension (needs a C++ compiler and
    ninja; tens of seconds, then cached in ~/.cache/torch_extensions/<name>, or under
    $TORCH_EXTENSIONS_DIR). ``-ffast-math`` is a
    compile flag only: the shared object is not linked with crtfastmath, so
    loading it does not flush denormals for the rest of the process (tested).
    """
    if "mod" not in _FUSED and os.environ.get("SYNSYM_FUSED", "1") == "0":
        _FUSED.update(mod=None, why="SYNSYM_FUSED=0")
    if "mod" not in _FUSED:
        tag, flags = _isa_flags()
        bindir = str(Path(sys.executable).parent)  # the venv's ninja when it is not activated
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        try:
            _FUSED["tag"] = tag
            _FUSED["mod"] = _build(build_name(tag), flags)
        except Exception as e:  # no compiler, no ninja, ...: the eager path still works
            _FUSED["mod"] = None
            _FUSED["why"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            print(f"synsym.ntk: fused CPU kernel unavailable ({_FUSED['why']}); using eager torch", file=sys.stderr)
    return _FUSED["mod"]
