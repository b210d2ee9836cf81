"""Benchmark of feed-forward decoding: time, memory and share of the machine's conv ceiling.

Paper Sec. 5 / Fig. 15: decoding cost is linear in pixels (10 / 40 / 160 ms for
256^2 / 512^2 / 1024^2 on a Titan X) and 512^2 needs about 2.5 GB of GPU memory.
This bench decodes 256^2 ... 2048^2 noise with the full-width generator (random
weights: speed does not depend on them) in fp32 and bf16 and prints, per size:

* median wall time of a decode (after a warm-up), and per megapixel;
* peak RSS of a fresh process (``ru_maxrss``: every size runs in its own subprocess,
  so sizes do not contaminate each other) and the peak of the decode alone (Linux
  ``VmHWM`` after resetting it through ``/proc/self/clear_refs``);
* useful GFLOP (convolutions of encoder and G at that size, halos not counted), the
  achieved TFLOP/s, and its share of the conv ceiling in the row's precision: plain
  VGG-like convs measured in the same run (``bench/_common.py``, printed in the header
  line with the CPU kind), so the ratio holds from machine to machine.

``--variants`` adds a 512^2 ablation: contiguous vs channels_last, bf16 autocast vs
bf16 weights, BatchNorm folding, ``torch.compile``, and the cost of the CLI's default 32 px
border margin (``mgan.decode.MARGIN``: the rows above decode exactly n x n, ``margin=0``; the
margin's row counts the same useful FLOPs, so its TFLOP/s shows the overhead). The CPU is shared by others here,
so the load average is printed at start and end: compare runs with similar load.

Usage::

    python bench/decode.py                       # sizes 256..2048, fp32 and bf16
    python bench/decode.py --sizes 512 --variants --compile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (256, 512, 1024, 2048)
PAPER_MS = {256: 10, 512: 40, 1024: 160}  # Titan X, paper Fig. 15


def _vm(key: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process in MB (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def conv_flops(decoder, height: int, width: int) -> float:
    """FLOPs (2 x MACs) of all convolutions of encoder + G for one untiled ``height x width`` decode."""
    import torch
    from torch import nn

    total = 0.0

    def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        if isinstance(m, nn.ConvTranspose2d):  # each input pixel scatters a k x k x C_out block
            total += 2.0 * inp[0].shape[-2] * inp[0].shape[-1] * m.in_channels * m.out_channels // m.groups * k
        else:
            total += 2.0 * out.shape[-2] * out.shape[-1] * m.out_channels * m.in_channels // m.groups * k

    handles = [m.register_forward_hook(hook) for m in decoder.pipeline.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.inference_mode():
            decoder.pipeline(torch.rand(1, 3, height, width, device=decoder.device))
    finally:
        for h in handles:
            h.remove()
    return total


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args: argparse.Namespace) -> dict:
    """Decode one configuration in this (fresh) process and return its measurements."""
    import resource

    import torch

    from mgan.decode import Decoder, fit_margin

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    # margin 0 (default here): the network's throughput at exactly n x n; with --margin the
    # decode runs at (n + 2 margin)^2 px, counted as overhead (the FLOPs stay n x n's)
    dec = Decoder(args.model, device=args.device, precision=args.precision, tile=args.tile,
                  channels_last=not args.contiguous, fold_bn=not args.no_fold, compile=args.compile,
                  margin=args.margin)
    init_s = time.perf_counter() - t0
    n = args.size
    flops = conv_flops(dec, 64, 64) * (n / 64) ** 2
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, n, n, generator=g)
    t0 = time.perf_counter()
    dec.decode(x)  # warm-up: oneDNN primitives / compiled kernels for these tile shapes
    _sync(dec.device)
    first_s = time.perf_counter() - t0
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # clear_refs resets it
    has_hwm = _reset_peak()
    base = _vm("VmRSS")
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        dec.decode(x)
        _sync(dec.device)
        times.append(time.perf_counter() - t0)
    m = fit_margin(dec.margin, n, n)
    rows, cols = dec.plan(n + 2 * m, n + 2 * m)
    med = statistics.median(times)
    return {
        "size": n, "precision": args.precision, "variant": args.label, "tiles": f"{len(rows)}x{len(cols)}",
        "tile_px": rows[0].src_len, "median_s": med, "min_s": min(times), "first_s": first_s, "init_s": init_s,
        "gflop": flops / 1e9, "tflops": flops / med / 1e12,
        "peak_rss_mb": max(peak_before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, _vm("VmHWM") or 0),
        "decode_peak_mb": _vm("VmHWM") if has_hwm else None, "base_rss_mb": base,
        "threads": torch.get_num_threads(),
    }


def ceiling(repeat: int, threads: int = 0) -> dict:
    """fp32 and bf16 GFLOP/s of plain VGG-like convs (channels_last), the machine's practical
    ceiling (``bench/_common.py``), and the header line naming the CPU kind."""
    import _common
    import torch

    if threads:
        torch.set_num_threads(threads)
    ceil = _common.ceiling(repeat=max(5, repeat))
    return {"gflops": ceil, "header": _common.header(ceil)}


def _spawn(argv: list[str], timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", *argv]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"worker {' '.join(argv)} failed: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python bench/decode.py",
        description="Decode time, peak memory and share of the conv ceiling, per size and precision.",
        epilog="example: python bench/decode.py --sizes 256 512 --precisions bf16 --repeat 3",
    )
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="square output sides")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "bf16-autocast"])
    p.add_argument("--repeat", type=int, default=3, help="timed decodes per configuration (median)")
    p.add_argument("--model", type=Path, default=None, help="generator file (default: a random full-width G)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", action="store_true", help="also run the 512^2 ablation of speed-ups")
    p.add_argument("--compile", action="store_true", help="include torch.compile in the ablation (slow to start)")
    p.add_argument("--threads", type=int, default=0, help="torch threads in the workers (default: torch's choice)")
    p.add_argument("--json", type=Path, help="also write all rows as JSON lines here")
    p.add_argument("--timeout", type=float, default=1200, help="seconds per worker")
    # worker-only options
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ceiling", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=512, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="bf16", help=argparse.SUPPRESS)
    p.add_argument("--tile", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--contiguous", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-fold", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--label", default="default", help=argparse.SUPPRESS)
    p.add_argument("--margin", type=int, default=0, help=argparse.SUPPRESS)
    return p


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    """Run the bench (or, with ``--worker``, one measurement); 0 ok, 2 bad options, 1 a worker failed."""
    args = _parser().parse_args(argv)
    if args.worker:
        if args.tile != "auto":
            args.tile = None if args.tile == "off" else int(args.tile)
        print(json.dumps(ceiling(args.repeat, args.threads) if args.ceiling else worker(args)))
        return 0
    if any(s < 16 or s % 8 for s in args.sizes) or args.repeat < 1:
        print("error: sizes must be multiples of 8 (>= 16) and --repeat >= 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mgan-bench-") as tmp:
        model = args.model
        if model is None:
            import torch

            from mgan.generator import Generator, save_release

            torch.manual_seed(0)
            model = save_release(Generator(), Path(tmp) / "g.safetensors")
        elif not model.is_file():
            print(f"error: generator not found: {model}", file=sys.stderr)
            return 2
        common = ["--model", str(model), "--device", args.device, "--repeat", str(args.repeat),
                  "--threads", str(args.threads)]
        load0 = os.getloadavg()
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
              f"load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
        rows = []
        try:
            ceil = _spawn(["--ceiling", *common], args.timeout)
            print(f"# {ceil['header']}")
            jobs = [(p, n, "default", []) for p in args.precisions for n in args.sizes]
            if args.variants:
                v = [("fp32", "fp32 contiguous", ["--contiguous"]), ("fp32", "fp32 channels_last", []),
                     ("bf16-autocast", "bf16 autocast (fp32 weights)", []),
                     ("bf16", "bf16 weights, BN not folded", ["--no-fold"]), ("bf16", "bf16 weights + BN folded", []),
                     ("bf16", "bf16 untiled (tile off)", ["--tile", "off"]),
                     ("bf16", "bf16 + 32 px border margin (the CLI's default)", ["--margin", "32"])]
                if args.compile:
                    v += [("bf16", "bf16 + torch.compile", ["--compile"]),
                          ("fp32", "fp32 + torch.compile", ["--compile"])]
                jobs += [(p, 512, label, extra) for p, label, extra in v]
            for precision, n, label, extra in jobs:
                r = _spawn([*common, "--precision", precision, "--size", str(n), "--label", label, *extra],
                           args.timeout)
                # bf16-autocast runs its convs in bf16 too
                r["share"] = r["tflops"] * 1e3 / ceil["gflops"]["fp32" if precision == "fp32" else "bf16"]
                rows.append(r)
                print(f"  done {label} {precision} {n}^2: {r['median_s'] * 1e3:.0f} ms", file=sys.stderr)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    load1 = os.getloadavg()
    head = ("| size | precision | variant | tiles (px) | median ms | ms/MP | paper ms | peak RSS MB | decode peak MB "
            "| GFLOP | TFLOP/s | of ceiling |")
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for r in rows:
        mp = r["size"] ** 2 / 1e6
        print(f"| {r['size']}^2 | {r['precision']} | {r['variant']} | {r['tiles']} ({r['tile_px']}) "
              f"| {r['median_s'] * 1e3:.0f} | {r['median_s'] * 1e3 / mp:.0f} | {PAPER_MS.get(r['size'], '-')} "
              f"| {r['peak_rss_mb']:.0f} | {_fmt(r['decode_peak_mb'], '.0f')} | {r['gflop']:.0f} "
              f"| {r['tflops']:.3f} | {r['share'] * 100:.0f}% |")
    for r in rows:
        if r["variant"] != "default" and "compile" in r["variant"]:
            print(f"# {r['variant']}: first decode (compilation) {r['first_s']:.1f} s")
    print(f"# threads {rows[0]['threads'] if rows else '?'}; load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if args.json:
        from mgan.io import atomic_write

        with atomic_write(args.json, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
