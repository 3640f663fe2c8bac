"""Benchmark: every GPU number docs/gpu.md cites, in one run: an estimated 6-8 minutes on one H200, ~4 of them
compiling kernels (by compile times measured on a CPU for sm_90 under its Triton 3.6.0; not yet timed there).

    python bench/gpu.py                       # on a GPU machine: writes docs/gpu-<device>.md
    python bench/gpu.py --smoke --device cpu  # tiny sizes on a CPU (what the tests run)
    python bench/gpu.py --sections history kernels --sizes 16 32   # some sections, some image sizes

On a lent GPU (the `device` tool; its machine has its own torch and Triton, no git history, and
returns only what is written under $OUT), prepare here, once:

    echo /.device/ >> .git/info/exclude; mkdir -p .device
    git show a63fa24:src/synsym/ntk/fused_triton.py > .device/fused_triton_a63fa24.py

then run there, carrying .device, with a time limit of ~590 s:

    PYTHONPATH=src python3 bench/gpu.py --against .device/fused_triton_a63fa24.py --out $OUT/gpu.md

The report is rewritten after every section (history first: issue #20's 5x), so a run cut short by
the limit still returns every section it finished; copy it to docs/gpu-<device>.md.

Sections, each measured side by side in this one process (run in the order --sections gives):
  history   this checkout's float64 kernel against earlier revisions' (--against; by default a63fa24,
            the kernel measured on the H200 in calibrations/h200.md; 231da89 is the last
            with float64 <-> float32 conversions), on the same inputs: ms per entry and the speed-up
  kernels   the fused Triton kernel vs the eager path on the same device: max relative
            difference in float64 and float32, and ms per kernel entry (one image pair, every
            conv readout, NNGP + NTK) at 8x8, 16x16 and 32x32, depth 8
  blocks    the float64 Triton kernel's ms per entry under each block shape (elements, warps, register cap)
  roots     the kernel's own float64 square root (float32 rsqrt start, Newton steps) against IEEE
            sqrt (ulp, share equal), and its arccos against torch's, computed on the device
  training  ms per SGD step of the paper grid's stacked seeds (5; S-Dist 10), float32, 32x32
            images, batch 40, depth 8, with TFLOP/s by the direct-convolution count
  imagenet  training images/s of the ImageNet models (synthetic batches, bf16 autocast on a GPU)
            and the CPU loader's images/s per worker (decode, Inception crop, flip, normalize)
Each number is printed and written to the report with the device's name beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Triton's LLVM must be loaded before anything that may bring TensorFlow's (synsym.ntk.reference)
import history as history_mod  # noqa: E402  (bench/history.py)
import torch  # noqa: E402
from _common import sync  # noqa: E402  (bench/_common.py)

from synsym.core import architectures as A  # noqa: E402
from synsym.core.device import resolve_device  # noqa: E402

FULL = {"kernel_sizes": [(8, 1024, 256), (16, 256, 64), (32, 64, 16)], "depth": 8, "image": 32, "steps": 20,
        "train": [("vec", 8, 5), ("vec", 128, 5), ("lcn", 32, 5), ("fcn", 1024, 5), ("gap", 128, 5),
                  ("lap4", 128, 5), ("lap8", 128, 5), ("vec", 512, 10), ("gap", 512, 10)],
        "compile": [("vec", 8), ("lcn", 32), ("gap", 128)],
        "imagenet": [("resnet50", 256, 224), ("mixer_s16", 256, 224), ("efficientnet_b0", 256, 224)], "loader": 256,
        "blocks": 4, "roots": 1_000_000, "repeat": 2}
SMOKE = {"kernel_sizes": [(4, 6, 3), (8, 4, 4)], "depth": 2, "image": 8, "steps": 2,
         "train": [("vec", 4, 2), ("gap", 4, 2)], "compile": [("vec", 4)], "imagenet": [("resnet_tiny", 4, 32)], "loader": 8,
         "blocks": 2, "roots": 1000, "repeat": 1}  # repeat: timed runs after the warm one (a smoke run's times mean nothing)


# Earlier kernels timed beside this checkout's by default: the one measured on the H200
# (calibrations/h200.md). Each costs a compile per image size (~1.5 min at 32x32 for a63fa24's);
# `--against a63fa24 231da89` adds the last kernel whose square roots converted between float64 and float32.
AGAINST = ("a63fa24",)


def default_against() -> dict:
    """{spec: module} of AGAINST, or {} with a note where they cannot be read (no git history here)."""
    try:
        return {spec: history_mod.load(spec) for spec in AGAINST}
    except SystemExit as e:
        print(f"bench/gpu.py: no earlier kernels to time beside this one ({e}); pass --against FILE ...", file=sys.stderr)
        return {}


def timed(fn, device: torch.device, repeat: int = 3) -> float:
    """Best of ``repeat`` warm runs (the first call compiles and is not timed)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def ms_per_step(run, device: torch.device, max_steps: int, budget_s: float = 1.0) -> float:
    """ms per step of ``run(k)`` (k training steps): 2 warm-up steps (the first one's cuDNN choice or
    torch.compile is not timed), 2 more to estimate, then as many timed steps as fit in ~budget_s,
    3 to max_steps. A fixed 20 would take minutes on the grid's widest stacks (2-3 s a step)."""
    run(2)
    sync(device)
    t0 = time.perf_counter()
    run(2)
    sync(device)
    k = int(min(max_steps, max(3, budget_s * 2 / max(time.perf_counter() - t0, 1e-9))))
    t0 = time.perf_counter()
    run(k)
    sync(device)
    return 1e3 * (time.perf_counter() - t0) / k


def max_rel(got: dict, want: dict, s: int) -> float:
    """Largest relative difference over the conv readouts an s x s image has, NNGP and NTK."""
    from synsym.ntk import engine as E

    return max(((got[a][i] - want[a][i]).abs().max() / want[a][i].abs().max()).item()
               for a in E.CONV_MEMBERS if (A.get(a).pool or 0) <= s for i in range(2))


_CASES: dict = {}


def case(s: int, m: int, me: int, dtype: torch.dtype, device: torch.device, depth: int) -> tuple:
    """(x, w, want) of one kernel size: m random s x s x 3 images, the readout weights, and the eager path's
    readouts of the first me of them, computed once per run and shared by the sections that check the fused
    kernel against them. Only me images: the eager path holds several (pairs, d, d) tensors, 34 GB each in
    float64 at the full m (2^32 entries), which would not fit on one GPU; at me they are ~2 GB."""
    key = (s, m, me, dtype, str(device), depth)
    if key not in _CASES:
        from synsym.ntk import engine as E

        x = torch.as_tensor(np.random.default_rng(0).standard_normal((m, s, s, 3)), dtype=dtype, device=device)
        w = E.readout_weights(s, dtype, device, "circular")
        _CASES[key] = x, w, E.conv_block(x[:me], None, depth, w, "eager", padding="circular")
    return _CASES[key]


def rel_to_eager(x: torch.Tensor, w: torch.Tensor, want: dict, depth: int) -> float:
    """The fused kernel's largest relative difference from ``want`` (case()'s eager readouts) on the same images."""
    from synsym.ntk import engine as E

    me = next(iter(want.values()))[0].shape[0]
    return max_rel(E.conv_block(x[:me], None, depth, w, "triton", padding="circular"), want, x.shape[1])


def kernels(device: torch.device, p: dict) -> list[dict]:
    from synsym.ntk import engine as E

    rows = []
    for s, m, me in p["kernel_sizes"]:
        for dt in (torch.float64, torch.float32):
            x, w, want = case(s, m, me, dt, device, p["depth"])
            row = {"image": s, "m": m, "m_eager": me, "dtype": str(dt).split(".")[1],
                   "rel_diff": rel_to_eager(x, w, want, p["depth"])}
            for impl, n in (("triton", m), ("eager", me)):
                secs = timed(partial(E.conv_block, x[:n], None, p["depth"], w, impl, padding="circular"), device, p["repeat"])
                row[f"{impl}_ms_per_entry"] = 1e3 * secs / (n * n)
            row["tflops_triton"] = E.flops_per_entry(s, p["depth"]) / (row["triton_ms_per_entry"] * 1e-3) / 1e12
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def blocks(device: torch.device, p: dict) -> list[dict]:
    """ms per entry of the float64 Triton kernel under each (slice elements, warps[, register cap]) per program of
    fused_triton.block_candidates(s), side by side, with its difference from the eager path; the best goes
    into fused_triton.GPU_BLOCKS. In the interpreter (no GPU) the block shape does not apply."""
    from synsym.ntk import engine as E
    from synsym.ntk import fused_triton as FT

    rows = []
    for s, m, me in p["kernel_sizes"]:
        x, w, want = case(s, m, me, torch.float64, device, p["depth"])
        saved = FT.GPU_BLOCKS.get(s)
        for cand in FT.block_candidates(s)[: p["blocks"]]:
            FT.GPU_BLOCKS[s] = cand
            rel = rel_to_eager(x, w, want, p["depth"])
            secs = timed(partial(E.conv_block, x, None, p["depth"], w, "triton", padding="circular"), device, p["repeat"])
            be, nw, cap = FT.block_parts(cand)
            rows.append({"image": s, "m": m, "block_elems": be, "num_warps": nw, "max_regs": cap, "rel_diff": rel,
                         "ms_per_entry": 1e3 * secs / (m * m)})
            print(json.dumps(rows[-1]), flush=True)
        if saved is None:
            del FT.GPU_BLOCKS[s]
        else:
            FT.GPU_BLOCKS[s] = saved
    return rows


def history(device: torch.device, p: dict) -> list[dict]:
    """ms per entry of the float64 kernel of this checkout and of each earlier revision in p["against"]
    ({spec: module}, bench/history.py), each at its own default block shape, on the same inputs and
    through the same engine code, side by side; each also checked against the eager path. Issue #20's
    target is 5x a63fa24's speed at 32x32 and 16x16: the speed-up column against a63fa24, measured."""
    from synsym.ntk import engine as E

    against = p["against"]
    if not against:
        return []
    rows = []
    today = E.triton_kernel()
    for s, m, me in p["kernel_sizes"]:
        x, w, want = case(s, m, me, torch.float64, device, p["depth"])
        ms = {}
        for name, mod in {"this checkout": today, **against}.items():
            E._TRITON["mod"] = mod
            try:
                rel = rel_to_eager(x, w, want, p["depth"])
                fn = partial(E.conv_block, x, None, p["depth"], w, "triton", padding="circular")
                ms[name] = 1e3 * timed(fn, device, p["repeat"]) / (m * m)
            finally:
                E._TRITON["mod"] = today
            rows.append({"image": s, "m": m, "kernel": name, "rel_diff": rel, "ms_per_entry": ms[name],
                         "speedup": ms[name] / ms["this checkout"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def roots(device: torch.device, p: dict) -> list[dict]:
    """The kernel's square root and arccos as compiled for the device: a GPU's float32 MUFU rsqrt, which
    the interpreter does not have, starts the root; it must stay within 1 ulp of IEEE's."""
    from synsym.ntk import fused_triton as FT

    rng = np.random.default_rng(3)
    ax = rng.uniform(0, 1, p["roots"])
    v = np.concatenate([ax, 0.5 - 0.5 * ax, 1 - ax * ax, 2.0 ** rng.uniform(-80, 0, p["roots"]), [0.0, 1e-25, 1.0]])
    got = FT.sqrt(torch.as_tensor(v, device=device)).cpu().numpy()
    c = torch.as_tensor(np.concatenate([2 * ax - 1, [-1.0, 0.0, 1.0]]), device=device)
    want = np.sqrt(v)
    ulp = np.abs(got - want) / np.spacing(want)
    rows = [{"what": "sqrt, max ulp from IEEE (numpy)", "n": int(v.size), "value": float(ulp.max())},
            {"what": "sqrt, share differing from IEEE", "n": int(v.size), "value": float((got != want).mean())},
            {"what": "arccos, max abs. diff from torch.arccos", "n": int(c.numel()),
             "value": (FT.acos(c) - torch.arccos(c)).abs().max().item()}]
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


# The speed switches of training (TrainConfig, config training.*), each measured against today's path.
VARIANTS = {"today": {}, "tf32": {"tf32": True}, "tf32+nhwc": {"tf32": True, "channels_last": True},
            "tf32+per_seed": {"tf32": True, "conv": "per_seed"}, "tf32+compile": {"tf32": True, "compile": True}}
CONV_ONLY = ("tf32+nhwc", "tf32+per_seed")


def _train_steps(spec, params: dict, data: dict, depth: int, lr: torch.Tensor, batches: np.ndarray, switches: dict,
                 k: int) -> None:
    """k SGD steps of a stack of seeds (batch 40, no evaluation) under the speed switches."""
    from synsym.finite import training as TR

    cfg = TR.TrainConfig(max_steps=k, eval_every=10**9, batch_size=40, **switches)
    TR.train(spec, params, data, depth, lr, 0.0, batches[:, :k], cfg, log=lambda _: None)


def training(device: torch.device, p: dict) -> list[dict]:
    """ms per SGD step of each stack of the paper grid's mix, under each speed switch (VARIANTS);
    torch.compile only where launches dominate (the nets in p["compile"])."""
    from synsym.finite import models as M
    from synsym.finite import training as TR

    s, n, rows = p["image"], 200, []
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((n, s, s, 3)), dtype=torch.float32, device=device)
    y = torch.as_tensor(np.random.default_rng(1).integers(0, 10, n), device=device)
    for arch, width, n_seeds in p["train"]:
        spec, seeds = A.get(arch, "circular"), list(range(n_seeds))
        batches = np.stack([TR.batch_indices(0, sd, n, 40, p["steps"]) for sd in seeds])
        data = {"x_train": x[None].expand(n_seeds, *x.shape), "y_train": y}
        lr = torch.full((n_seeds,), 1e-4)
        flops = 3 * M.forward_flops(spec, width, p["depth"], s) * 40 * n_seeds
        row = {"arch": arch, "width": width, "seeds": n_seeds}
        for name, switches in VARIANTS.items():
            if (name in CONV_ONLY and spec.body != "conv") or (name == "tf32+compile" and (arch, width) not in p["compile"]):
                continue
            params = M.init_params(spec, width, p["depth"], s, seeds, 0, torch.float32, device)
            run = partial(_train_steps, spec, params, data, p["depth"], lr, batches, switches)
            row[f"ms_{name}"] = ms_per_step(run, device, p["steps"])
        best = min((k for k in row if k.startswith("ms_")), key=row.get)
        row.update(ms_per_step=row["ms_today"], tflops=flops / (row["ms_today"] * 1e-3) / 1e12, best=best[3:],
                   speedup=row["ms_today"] / row[best])
        rows.append(row)
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _sgd_step(net, opt, xb: torch.Tensor, yb: torch.Tensor, device: torch.device) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def imagenet(device: torch.device, p: dict) -> list[dict]:
    from synsym.imagenet import models as V

    rows = []
    for model, batch, size in p["imagenet"]:
        torch.manual_seed(0)
        net = V.build(model, 1000, size).to(device).train()
        if device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        xb = torch.randn(batch, 3, size, size, device=device)
        yb = torch.randint(0, 1000, (batch,), device=device)

        secs = timed(partial(_sgd_step, net, opt, xb, yb, device), device, 3)
        rows.append({"what": f"train step {model}", "batch": batch, "images_per_s": batch / secs})
        print(json.dumps(rows[-1]), flush=True)
    # the loader beside the steps (bench/loader.py): one CPU worker's images/s with PIL and with torchvision.io,
    # and the GPU path (raw JPEGs decoded as one batch with nvjpeg, cropped on the device)
    import loader

    data = loader.jpegs(p["loader"])
    for what, v in loader.cpu_rates(data).items():
        rows.append({"what": f"CPU loader, one worker: {what} (JPEG 500x375)", "batch": 1, "images_per_s": v})
        print(json.dumps(rows[-1]), flush=True)
    if device.type == "cuda":
        rows.append({"what": "GPU decode_jpeg (nvjpeg) + crops 224, one batch", "batch": 256,
                     "images_per_s": loader.gpu_rate(data, str(device))})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _md_kernels(res: dict) -> list[str]:
    lines = ["## Conv-family kernel: fused Triton vs eager (depth {d})".format(d=res["depth"]), "",
             "Triton timed on m images (m^2 entries), eager on the first m (eager) of them, where the difference "
             "is taken too (its (pairs, d, d) tensors must fit on the device).", "",
             "| image | m | m (eager) | dtype | max rel. diff | Triton ms/entry | eager ms/entry | Triton TFLOP/s |",
             "|---|---|---|---|---|---|---|---|"]
    return lines + [f"| {r['image']}x{r['image']} | {r['m']} | {r['m_eager']} | {r['dtype']} | {r['rel_diff']:.1e} | "
                    f"{r['triton_ms_per_entry']:.4g} | {r['eager_ms_per_entry']:.4g} | {r['tflops_triton']:.2f} |"
                    for r in res["kernels"]]


def _md_blocks(res: dict) -> list[str]:
    lines = ["## Kernel block shapes (float64, fused Triton)", "",
             "ms per entry per (slice elements, warps, registers per thread at most) per program, side by side; the "
             "fastest per image size belongs in `synsym.ntk.fused_triton.GPU_BLOCKS` (in the interpreter the shape "
             "does not apply).", "",
             "| image | m | block elements | warps | max registers | max rel. diff | ms/entry | vs the first shape timed |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["blocks"]:
        first = next(q for q in res["blocks"] if q["image"] == r["image"])
        lines.append(f"| {r['image']}x{r['image']} | {r['m']} | {r['block_elems']} | {r['num_warps']} | "
                     f"{r.get('max_regs') or '-'} | {r['rel_diff']:.1e} | "
                     f"{r['ms_per_entry']:.4g} | {first['ms_per_entry'] / r['ms_per_entry']:.2f}x |")
    return lines


def _md_history(res: dict) -> list[str]:
    if not res["history"]:
        return []
    lines = ["## The kernel against earlier revisions (float64, fused Triton)", "",
             "ms per entry of each revision's kernel at its own default block shape, on the same inputs, side by "
             "side; the speed-up is this checkout's over that revision (issue #20's target: 5x a63fa24's at "
             "16x16 and 32x32).", "",
             "| image | m | kernel | max rel. diff | ms/entry | this checkout's speed-up |", "|---|---|---|---|---|---|"]
    return lines + [f"| {r['image']}x{r['image']} | {r['m']} | {r['kernel']} | {r['rel_diff']:.1e} | {r['ms_per_entry']:.4g} | "
                    f"{r['speedup']:.2f}x |" for r in res["history"]]


def _md_roots(res: dict) -> list[str]:
    lines = ["## The kernel's square root and arccos, on the device", "", "| what | arguments | value |", "|---|---|---|"]
    return lines + [f"| {r['what']} | {r['n']:,} | {r['value']:.3g} |" for r in res["roots"]]


def _md_training(res: dict) -> list[str]:
    lines = ["## Training steps (float32, batch 40, stacked seeds)", "",
             "ms per step under each speed switch (training.tf32 / channels_last / conv / compile; '-': not applicable "
             "or not measured); TFLOP/s is today's path.", "",
             "| architecture | width | seeds | " + " | ".join(VARIANTS) + " | TFLOP/s today | best | speed-up |",
             "|---|---|---|" + "---|" * len(VARIANTS) + "---|---|---|"]
    for r in res["training"]:
        ms = " | ".join(f"{r[f'ms_{v}']:.3g}" if f"ms_{v}" in r else "-" for v in VARIANTS)
        lines.append(f"| {r['arch']} | {r['width']} | {r['seeds']} | {ms} | {r['tflops']:.2f} | {r['best']} | "
                     f"{r['speedup']:.2f}x |")
    tot = {v: sum(r.get(f"ms_{v}", r["ms_today"]) for r in res["training"]) for v in VARIANTS}
    return lines + ["", "Summed over the mix (a switch that does not apply counts at today's time): "
                    + ", ".join(f"{v} {tot['today'] / t:.2f}x" for v, t in tot.items())]


def _md_imagenet(res: dict) -> list[str]:
    return ["## ImageNet", "", "| what | batch | images/s |", "|---|---|---|"] + [
        f"| {r['what']} | {r['batch']} | {r['images_per_s']:.0f} |" for r in res["imagenet"]]


# name: (what measures it, how the report shows it). bench/gpu.py runs them in the order given to
# --sections (default: this order, issue #20's 5x first), and rewrites the report after each one, so a
# run cut short by a time limit still returns every section it finished.
SECTIONS = {"history": (history, _md_history), "kernels": (kernels, _md_kernels), "roots": (roots, _md_roots),
            "blocks": (blocks, _md_blocks), "training": (training, _md_training), "imagenet": (imagenet, _md_imagenet)}


def report(name: str, res: dict, seconds: dict) -> str:
    """The report of the sections in ``res`` (in the order they ran), with each one's minutes."""
    import triton

    lines = [f"# GPU numbers: {name}", "",
             f"`python bench/gpu.py` ({sum(seconds.values()) / 60:.1f} min; torch {torch.__version__}, Triton "
             f"{triton.__version__}). Every number below is from this run on {name}. Sections and their minutes: "
             + ", ".join(f"{k} {v / 60:.1f}" for k, v in seconds.items()) + "."]
    for key in seconds:
        lines += [""] + SECTIONS[key][1](res)
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (tests; any device)")
    ap.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS),
                    help="what to measure, in this order (default: all, in this order)")
    ap.add_argument("--sizes", nargs="+", type=int, help="image sizes of the kernel sections (default: 8 16 32)")
    ap.add_argument("--blocks", type=int, help="how many of fused_triton.block_candidates(size) to time "
                    "(default 4: each compiles for ~1 min at 32x32)")
    ap.add_argument("--out", help="the report (default docs/gpu-<device name>.md)")
    ap.add_argument("--against", nargs="*", help="earlier kernels to time beside this checkout's: git revisions or "
                    "saved copies of src/synsym/ntk/fused_triton.py (default: " + " ".join(AGAINST) + ", skipped "
                    "with a note where this checkout has no git history)")
    a = ap.parse_args(argv)
    device = resolve_device(a.device)
    p = dict(SMOKE if a.smoke else FULL)
    if a.sizes:
        known = [k[0] for k in p["kernel_sizes"]]
        if bad := sorted(set(a.sizes) - set(known)):
            raise SystemExit(f"bench/gpu.py: --sizes {bad} unknown; this preset has {known}")
        p["kernel_sizes"] = [k for k in p["kernel_sizes"] if k[0] in a.sizes]
    p["against"] = {}
    if "history" in a.sections:
        p["against"] = ({spec: history_mod.load(spec) for spec in a.against} if a.against is not None
                        else default_against())
    p["blocks"] = a.blocks or p["blocks"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    out = Path(a.out) if a.out else ROOT / "docs" / f"gpu-{name.replace(' ', '-')}.md"
    res, seconds = {"depth": p["depth"]}, {}
    for key in a.sections:
        t0 = time.perf_counter()
        res[key] = SECTIONS[key][0](device, p)
        seconds[key] = time.perf_counter() - t0
        write_atomic(out, report(name, res, seconds))
        print(f"bench/gpu.py: {key} took {seconds[key] / 60:.1f} min; wrote {out}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
