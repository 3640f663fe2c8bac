"""Benchmark without a GPU: the fused Triton kernel's machine code for an H200 (sm_90), counted.

    python bench/sass.py                          # this checkout: 8x8, 16x16, 32x32, float64 and float32
    python bench/sass.py --against a63fa24        # side by side with the kernel of another commit
    python bench/sass.py --sizes 16 --dtypes float64 --block-elems 512 1024
    python bench/sass.py --tuned                  # each size at the shape a GPU runs (fused_triton.GPU_BLOCKS)
    python bench/sass.py --predict                # what the H200 measurement of a63fa24 predicts for this kernel

Triton compiles ``synsym.ntk.fused_triton._conv_stack_kernel`` for an sm_90 target and assembles it
with the ptxas it ships; nothing is launched, so no GPU is needed. Per *element-layer* (one
(pair, delta, pixel) value through one conv + ReLU layer) it reports: the SASS instructions (all, and
the hot ones a warp issues on normal inputs: not the slow-path calls of divisions and square
roots), the float64 ones among them, float64 <-> float32 conversions, warp shuffles, shared-memory and
register-spill (local memory) accesses;
the divisions and square roots left in the PTX (each a ~10-20 instruction sequence with a
slow-path call); the registers per thread and the warps an SM can then hold (65,536 registers, at
most 64 warps). Per-layer counts are exact: the layer loop is unrolled, so (count at L = 9 - count
at L = 1) / (8 x elements per thread) leaves out the prologue (loading pixels) and the epilogue
(readout sums). Issue #20 asks to work from such counts; time per entry needs a GPU (bench/gpu.py).
Static counts are a proxy for speed, not a measurement of it. The kernel is compiled as a launch on
torch tensors compiles it: every pointer argument 16-byte aligned (Triton specializes on that, and
the loads' register layouts follow from it), fused multiply-adds as fused_triton.LAUNCH asks.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import subprocess
import tempfile
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # compile for the GPU target even on a machine without one

ROOT = Path(__file__).resolve().parents[1]

from history import load  # noqa: E402  (bench/history.py: this checkout's kernel or another revision's)

from synsym.ntk.fused_triton import block_parts, block_shape  # noqa: E402  (this checkout's: how conv_stack sizes a program)

FP64 = ("DFMA", "DMUL", "DADD", "DSETP", "DMNMX")
INT = ("IMAD", "IADD3", "VIADD", "LEA", "SHF", "LOP3", "ISETP", "SEL", "PRMT")  # address and index arithmetic


def compile_kernel(mod, s: int, dtype: str, depth: int, block_elems: int, num_warps: int, maxnreg: int | None = None):
    """The compiled kernel (ptx, cubin) for sm_90 at image size s, float64 readouts; maxnreg caps the
    registers per thread (ptxas spills the rest)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = mod._conv_stack_kernel
    ap, bd = block_shape(s * s, block_elems)
    values = {"SCALE": 2.0 / 9.0, "SB2": 0.0, "S": s, "C": 3, "L": depth, "R": 4, "AP": ap, "BD": bd, "SYM": True,
              "E": mod.layout_elems(ap, bd, num_warps) if hasattr(mod, "layout_elems") else 1,
              "ZERO": False}  # the circular kernel (zero padding's is other code, counted apart if ever asked)
    ptr = {"float64": "*fp64", "float32": "*fp32"}[dtype]
    sig, consts = {}, {}
    for i, p in enumerate(kernel.params):
        if p.is_constexpr:
            if p.name not in values:
                raise SystemExit(f"bench/sass.py: unknown constexpr {p.name} of {kernel.fn.__name__}; known: {sorted(values)}")
            sig[p.name], consts[(i,)] = "constexpr", values[p.name]
        elif p.name == "ok_ptr":  # the (offset, pixel) mask, one byte an element
            sig[p.name] = "*i8"
        elif p.name.endswith("_ptr"):
            sig[p.name] = "*fp64" if p.name in ("w_ptr", "pk_ptr", "pt_ptr") else ptr
        else:  # runtime scalars: the image counts are ints, anything else a Python float (typed fp32)
            sig[p.name] = "i32" if p.name in ("n1", "n2") else "fp32"
    # a launch on torch tensors marks each pointer 16-byte aligned (torch allocates on 256-byte boundaries)
    attrs = {(i,): [["tt.divisibility", 16]] for i, p in enumerate(kernel.params) if p.name.endswith("_ptr")}
    src = ASTSource(fn=kernel, signature=sig, constexprs=consts, attrs=attrs)
    # the compile options conv_stack launches with; revisions before fused_triton.LAUNCH compiled with
    # Triton's default then, fused multiply-adds on (3.10 turns that default off)
    options = {"num_warps": num_warps, "enable_fp_fusion": True, **getattr(mod, "LAUNCH", {})}
    if maxnreg:
        options["maxnreg"] = maxnreg
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)


def opcodes(sass: str) -> list[tuple[str, bool]]:
    """(opcode, hot) of every SASS instruction in order. Cold: a block that a predicated forward
    branch jumps over and that calls a subroutine, i.e. the slow path of a float64 division or
    square root (register moves and a CALL, run only for denormal or special arguments). Such
    blocks are in the static count but not in the instructions a warp issues on normal inputs."""
    out: list[tuple[str, bool]] = []
    target, block = None, []
    for line in sass.splitlines():
        label = re.match(r"\s*(\.L_x_\d+):", line)
        if label and label.group(1) == target:
            cold = any(op.startswith("CALL") for op in block)
            out += [(op, not cold) for op in block]
            target, block = None, []
            continue
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(.*)", line)
        if not m:
            continue
        if target is None and m.group(1) and m.group(2) == "BRA" and (t := re.search(r"(\.L_x_\d+)", m.group(3))):
            out.append(("BRA", True))
            target, block = t.group(1), []
        elif target is None:
            out.append((m.group(2), True))
        else:
            block.append(m.group(2))
    return out + [(op, True) for op in block]


def counts(compiled) -> tuple[collections.Counter, int]:
    """SASS opcode counts and registers per thread of a compiled kernel."""
    import triton

    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        sass = subprocess.run([str(tools / "nvdisasm"), "-c", f.name], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([str(tools / "cuobjdump"), "--dump-resource-usage", f.name],
                               capture_output=True, text=True, check=True).stdout
    ops = collections.Counter()
    for op, hot in opcodes(sass):
        ops[op] += 1
        ops["hot"] += hot
    # an SM's memory-I/O data path, in its cycles: a warp shuffle takes 1 (32 lanes x 4 bytes a clock), a
    # shared, global or local access its 32 lanes' bytes / 128 (the L1 / shared memory's 128 bytes a clock;
    # global loads as if coalesced, which tests/test_triton.py's address trace checks)
    for m in re.finditer(r"/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?(SHFL|LDS|STS|LDG|STG|LDL|STL)((?:\.\w+)*)", sass):
        mods = m.group(2)
        ops["mio"] += 1 if m.group(1) == "SHFL" else (16 if ".128" in mods else 8 if ".64" in mods else 4) * 32 / 128
    ptx = compiled.asm["ptx"]
    ops["div.f64"] = len(re.findall(r"\bdiv\.rn\.f64", ptx))
    ops["sqrt.f64"] = len(re.findall(r"\bsqrt\.rn\.f64", ptx))
    ops["div.f32"] = len(re.findall(r"\bdiv\.(?:rn|full|approx)\S*\.f32", ptx))
    return ops, int(re.search(r"REG:(\d+)", usage).group(1))


def warps_per_sm(regs: int, num_warps: int) -> int:
    """Resident warps at this register count (sm_90: 64K registers, 256-register warp granules, 64 warps)."""
    per_warp = math.ceil(regs * 32 / 256) * 256
    blocks = 65536 // (per_warp * num_warps)
    return min(64, blocks * num_warps)


def profile(mod, s: int, dtype: str, block_elems: int, num_warps: int, maxnreg: int | None = None) -> dict:
    """Per element-layer counts, plus what the PTX says about float32 (a float64 kernel should have none)."""
    c1, c9 = (compile_kernel(mod, s, dtype, d, block_elems, num_warps, maxnreg) for d in (1, 9))
    (o1, _), (o9, regs) = counts(c1), counts(c9)
    ptx = c9.asm["ptx"]
    ap, bd = block_shape(s * s, block_elems)
    per_thread = bd * ap / (32 * num_warps)
    per = {k: (o9[k] - o1[k]) / (8 * per_thread) for k in set(o9) | set(o1)}
    sass = sum(v for k, v in per.items() if k[0].isupper())
    return {"instr": sass, "hot": per.get("hot", 0), "fp64": sum(per.get(k, 0) for k in FP64),
            "int": sum(per.get(k, 0) for k in INT), "shfl": per.get("SHFL", 0),
            "shared": per.get("LDS", 0) + per.get("STS", 0), "spill": per.get("LDL", 0) + per.get("STL", 0),
            "div": per.get("div.f64", 0) + per.get("div.f32", 0),
            "sqrt": per.get("sqrt.f64", 0), "regs": regs, "warps": warps_per_sm(regs, num_warps),
            "branches": per.get("BRA", 0),
            # a float runtime argument arrives as a .f32 parameter; any .f32 op in a float64 kernel is lost
            # precision, but for each square root's start (one rsqrt.approx.f32 on bits taken from the float64)
            "f32_params": len(re.findall(r"\.param\s+\.f32", ptx)),
            "f32_ops": len(re.findall(r"\.f32\b", ptx)) - len(re.findall(r"\brsqrt\.approx(?:\.ftz)?\.f32", ptx)),
            # F2F: float64 <-> float32 conversions, priced in slots()
            "conv": per.get("F2F", 0), "fp64_cmp": per.get("DSETP", 0), "mio": per.get("mio", 0),
            # unary minus on a float (fused_triton._neg says why the kernel has none)
            "negf": len(re.findall(r"\barith\.negf\b", c9.asm["ttir"]))}


# The float64 kernel measured on one NVIDIA H200, ms per entry at depth 8 with blocks of 1,024 elements on
# 4 warps (calibrations/h200.md: commit 3be5a62, whose kernel is a63fa24's but for two float32
# scalar arguments), and that GPU's rates: thread instructions issued per second (132 SMs x 4 schedulers
# x 32 lanes x 1.98 GHz) and float64 lane operations per second (64 per SM and clock).
H200_MS = {8: 0.00059, 16: 0.0150, 32: 0.287}
# The Triton that compiled it there (and that the H200 image still has): its code differs from the pinned
# Triton's (fused_triton._neg), so predictions are best counted under it (docs/gpu.md: "Which Triton").
H200_TRITON = "3.6.0"
H200_ISSUE, H200_FP64 = 132 * 4 * 32 * 1.98e9, 132 * 64 * 1.98e9
H200_SM_CYCLES = 132 * 1.98e9  # each SM's memory-I/O path: one of row["mio"]'s cycles each
MEASURED = "a63fa24"


def slots(row: dict) -> float:
    """A scheduler's cycles per warp and element-layer at full rate, the largest of three: it issues one
    instruction a cycle; its float64 pipe (16 lanes) takes a warp's float64 instruction in H200_ISSUE /
    H200_FP64 = 2, and a float64 <-> float32 conversion (F2F) as 4 of them (CUDA's throughput table gives
    conversions from and to 64-bit types 16 per SM and clock on compute capability 9.0, a quarter of
    DFMA's 64; which pipe runs them is not documented: where a GPU has few float64 units their rate
    equals the float64 rate, which suggests those units; a63fa24 and today's kernel have none, 231da89
    6); and the SM's memory-I/O path (shuffles, shared, L1), which its 4 schedulers share: 4 x its
    cycles (row["mio"]). An estimate from documented rates, not a measurement."""
    return max(row["hot"], H200_ISSUE / H200_FP64 * (row["fp64"] + 4 * row.get("conv", 0)), 4 * row.get("mio", 0))


def predict(measured: dict, now: dict, s: int, depth: int = 8, speedup: float = 5.0) -> dict:
    """What the H200 measurement of the `measured` kernel says about `now` (both profile() rows at size s).

    efficiency: the share of its full rate the measured kernel reached (its slots() x its element-layers
    per second, over the issue rate: by slots() it was issue-bound at 8x8 and 16x16, bound by its
    memory-I/O path, 48 shuffles and 20 shared accesses per element-layer, at 32x32); ms_per_entry:
    now's time at that same efficiency (an assumption, not a measurement), by slots(); for `speedup` x
    the measured speed: the issue, float64 and memory-I/O shares now's counts would need, and the slots
    that would do at the measured efficiency."""
    rate = (s * s) ** 2 * depth / (H200_MS[s] * 1e-3)  # element-layers per second, measured
    eff = rate * slots(measured) / H200_ISSUE
    return {"efficiency": eff, "ms_per_entry": H200_MS[s] * slots(now) / slots(measured),
            "speedup": slots(measured) / slots(now), "need_issue": speedup * rate * now["hot"] / H200_ISSUE,
            "need_fp64": speedup * rate * now["fp64"] / H200_FP64,
            "need_mio": speedup * rate / 32 * now.get("mio", 0) / H200_SM_CYCLES,
            "slots_at_efficiency": eff * H200_ISSUE / (speedup * rate)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=int, default=[8, 16, 32])
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    p.add_argument("--block-elems", nargs="+", type=int, default=[1024])
    p.add_argument("--num-warps", nargs="+", type=int, default=[4])
    p.add_argument("--max-regs", type=int, help="registers per thread at most (Triton's maxnreg)")
    p.add_argument("--tuned", action="store_true", help="each size at this checkout's GPU_BLOCKS shape instead")
    p.add_argument("--against", help="git revision whose kernel to count side by side (ratios: it / this checkout)")
    p.add_argument("--json", action="store_true", help="one JSON line of every profile (for tests)")
    p.add_argument("--predict", action="store_true", help=f"float64: this checkout's kernel (at its GPU_BLOCKS shape) "
                   f"against {MEASURED}'s (1,024 x 4), with the H200 measurement of the latter")
    args = p.parse_args()
    if args.predict:
        return print_predictions(args.sizes, args.json)
    mods = {"this": load(None)}
    if args.against:
        mods[args.against] = load(args.against)

    def shapes(s: int) -> list[tuple[int, int, int | None]]:
        """(elements, warps, register cap) per program; a GPU_BLOCKS entry names the cap when it has one."""
        if args.tuned:
            be, nw, cap = block_parts(mods["this"].GPU_BLOCKS.get(s, mods["this"].DEFAULT_BLOCK))
            return [(be, nw, cap or args.max_regs)]
        return [(be, nw, args.max_regs) for be in args.block_elems for nw in args.num_warps]

    if args.json:
        print(json.dumps([{"kernel": name, "size": s, "dtype": dt, "block": be, "num_warps": nw, "max_regs": mr,
                           **profile(mod, s, dt, be, nw, mr)}
                          for s in args.sizes for dt in args.dtypes for be, nw, mr in shapes(s) for name, mod in mods.items()]))
        return
    cols = ("instr", "hot", "fp64", "conv", "mio", "int", "shfl", "shared", "spill", "div", "sqrt", "branches", "regs", "warps")
    import triton

    print(f"per element-layer on sm_90 (H200), static SASS counts by Triton {triton.__version__} (the H200 image has "
          f"{H200_TRITON}); warps = resident warps per SM at that register count")
    print(f"{'kernel':>10} {'size':>5} {'dtype':>8} {'block':>6} {'nw':>3} " + " ".join(f"{c:>7}" for c in cols))
    for s in args.sizes:
        for dt in args.dtypes:
            for be, nw, mr in shapes(s):
                got = {name: profile(mod, s, dt, be, nw, mr) for name, mod in mods.items()}
                for name, r in got.items():
                    print(f"{name[-10:]:>10} {s:>5} {dt:>8} {be:>6} {nw:>3} " + " ".join(f"{r[c]:>7.1f}" for c in cols))
                if args.against:
                    old, new = got[args.against], got["this"]
                    print(f"{'ratio':>10} {s:>5} {dt:>8} {be:>6} {nw:>3} instructions {old['instr'] / new['instr']:.2f}x fewer, "
                          f"hot {old['hot'] / new['hot']:.2f}x, "
                          f"fp64 {old['fp64'] / max(new['fp64'], 1e-9):.2f}x, warps/SM {new['warps']}/{old['warps']}")


def print_predictions(sizes: list[int], as_json: bool) -> None:
    """docs/gpu.md's "What the counts say about the 5x target", recomputed."""
    import triton

    this, old = load(None), load(MEASURED)
    if not as_json:
        print(f"counted by Triton {triton.__version__}; the H200 ran and has {H200_TRITON}")
    rows = []
    for s in sizes:
        be, nw, cap = block_parts(this.GPU_BLOCKS.get(s, this.DEFAULT_BLOCK))
        measured, now = profile(old, s, "float64", 1024, 4), profile(this, s, "float64", be, nw, cap)
        rows.append({"size": s, "block": be, "num_warps": nw, "measured_hot": measured["hot"], "hot": now["hot"],
                     "fp64": now["fp64"], "conv": now["conv"], "mio": now["mio"],
                     "measured_mio": measured["mio"], "measured_slots": slots(measured), "slots": slots(now),
                     "measured_ms": H200_MS[s],
                     **predict(measured, now, s)})
        if not as_json:
            r = rows[-1]
            print(f"{s}x{s}: {MEASURED} at 1,024 x 4 measured {r['measured_ms']} ms/entry with {r['measured_slots']:.0f} "
                  f"scheduler cycles per element-layer ({r['measured_hot']:.0f} hot): {r['efficiency']:.0%} of its full rate. "
                  f"This checkout at "
                  f"{be} x {nw}: {r['hot']:.0f} hot, {r['fp64']:.0f} float64, {4 * r['mio']:.0f} memory-I/O, so "
                  f"{r['slots']:.0f} scheduler cycles -> "
                  f"{r['ms_per_entry']:.3g} ms/entry at that efficiency ({r['speedup']:.2f}x, unmeasured). 5x needs "
                  f"{r['need_issue']:.0%} of the issue rate, {r['need_fp64']:.0%} of the float64 pipes and "
                  f"{r['need_mio']:.0%} of the memory-I/O path, or <= "
                  f"{r['slots_at_efficiency']:.0f} cycles at {r['efficiency']:.0%}.")
    if as_json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
