"""512^2 decode time per backend, in one run: torch fp32 / bf16, ONNX Runtime, OpenVINO f32 / bf16.

Issue #11's goal: a 512^2 decode >= 1.5x faster than torch fp32 on a CPU without native
bf16, and >= 70% of the machine's conv ceiling. Each row decodes the same 512^2 noise
image (one tile, full-width G with random weights: speed does not depend on them)
through :class:`mgan.decode.Decoder` with ``backend=...`` and prints the median wall
time, the ratio to torch fp32, and the share of the conv ceiling in the row's precision
(plain torch channels_last convs measured in the same run, ``bench/_common.py``; the
header names the CPU kind). The first decode of an exported backend includes the ONNX
export (into a temporary cache) and the compile; it is printed apart.

The last lines say what ``--backend auto`` picks from these times, here and as on a CPU
without native bf16 (where ``--precision auto`` is fp32: only fp32 / f32 rows compete),
by the rule of :mod:`mgan.backends` (fastest; torch unless another is 10% faster).

Usage::

    python bench/backends.py            # 512^2, median of 3
    python bench/backends.py --quick    # median of 1 after the warm-up (noisy)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import _common as common
import torch

# (label, decoder precision, backend, ceiling precision)
ROWS = (("torch fp32", "fp32", "torch", "fp32"), ("torch bf16", "bf16", "torch", "bf16"),
        ("onnxruntime fp32", "fp32", "onnxruntime", "fp32"), ("openvino f32", "fp32", "openvino", "fp32"),
        ("openvino bf16", "bf16", "openvino", "bf16"))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/backends.py",
                                description="512^2 decode time per backend and precision, ratio to torch fp32, share "
                                "of the conv ceiling, and what --backend auto picks.",
                                epilog="example: python bench/backends.py --quick")
    p.add_argument("--size", type=int, default=512, help="square side (multiple of 8)")
    p.add_argument("--repeat", type=int, default=3, help="timed decodes per row (median)")
    p.add_argument("--quick", action="store_true", help="--repeat 1 (one warm-up and one timed decode per row)")
    p.add_argument("--threads", type=int, default=0, help="torch / backend threads (default: torch's choice)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Print the table; 0 ok, 2 bad options."""
    args = _parser().parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    if args.size < 64 or args.size % 8 or repeat < 1 or args.threads < 0:
        print("error: --size must be a multiple of 8 >= 64, --repeat >= 1, --threads >= 0", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from decode import conv_flops  # bench/decode.py  # noqa: PLC0415

    from mgan import backends, precision  # noqa: PLC0415
    from mgan.decode import Decoder  # noqa: PLC0415
    from mgan.generator import Generator, save_release  # noqa: PLC0415

    native = precision.native_bf16("cpu")
    load0 = os.getloadavg()
    print(f"# {os.cpu_count()} CPUs, load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    precs = ("fp32", "bf16") if native else ("fp32",)
    ceil = common.print_header(precs)
    n = args.size
    x = torch.rand(1, 3, n, n, generator=torch.Generator().manual_seed(0))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mgan-bench-") as tmp:
        os.environ["MGAN_CACHE_DIR"] = tmp  # the export is timed, and the user's cache is left alone
        torch.manual_seed(0)
        model = save_release(Generator(), Path(tmp) / "g.safetensors")
        flops = None
        for label, prec, backend, ceil_prec in ROWS:
            if prec == "bf16" and not native:
                print(f"  skip {label}: bf16 is emulated on this CPU", file=sys.stderr)
                continue
            if not backends.installed(backend):
                print(f"  skip {label}: {backend} not installed (pip install 'mgan[fast]')", file=sys.stderr)
                continue
            # one G for all images (the running BN statistics): what an export holds (mgan.decode)
            # (margin=0: the FLOP count is of exactly n x n px)
            dec = Decoder(model, device="cpu", precision=prec, tile=None, backend=backend, bn_stats="running",
                          margin=0)
            if flops is None:
                flops = conv_flops(dec, 64, 64) * (n / 64) ** 2
            t0 = time.perf_counter()
            dec.decode(x)  # warm-up: export + compile, oneDNN primitives
            first = time.perf_counter() - t0
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                dec.decode(x)
                times.append(time.perf_counter() - t0)
            times.sort()
            med = times[len(times) // 2]
            how = backends.openvino_hint(prec)[0] if backend == "openvino" else prec
            rows.append({"label": f"{backend} {how}", "backend": backend, "precision": prec, "s": med, "first": first,
                         "ceil_prec": ceil_prec})
            print(f"  done {label}: {med:.2f} s", file=sys.stderr)
    # a ceiling is an upper bound: on a shared machine take the better of two measurements
    ceil = {p: max(g, common.ceiling((p,))[p]) for p, g in ceil.items()}
    print(f"# ceiling, best of start and end: {', '.join(f'{p} {g:.0f} GFLOP/s' for p, g in ceil.items())}")
    base = next((r["s"] for r in rows if r["backend"] == "torch" and r["precision"] == "fp32"), None)
    print(f"| {n}^2 decode | median s | x torch fp32 | of ceiling | first decode s (export, compile) |")
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = f"{base / r['s']:.2f}x" if base else "-"
        print(f"| {r['label']} | {r['s']:.2f} | {ratio} | {common.share(flops / 1e9, r['s'], ceil.get(r['ceil_prec']))} "
              f"| {r['first']:.1f} |")
    print(f"# {flops / 1e9:.0f} GFLOP per decode; threads {torch.get_num_threads()}; median of {repeat}")
    for what, prec in (("here", precision.resolve("auto", "cpu")), ("without native bf16", "fp32")):
        cand = {r["backend"]: r["s"] for r in rows if r["precision"] == prec}
        if "torch" in cand:
            best = min(cand, key=cand.get)
            if best != "torch" and cand[best] > (1 - backends.AUTO_MARGIN) * cand["torch"]:
                best = "torch"
            print(f"# --backend auto {what} (--precision auto = {prec}): {best}, "
                  f"{cand['torch'] / cand[best]:.2f}x torch {prec}"
                  + (f", {base / cand[best]:.2f}x torch fp32" if base and prec != "fp32" else ""))
    load1 = os.getloadavg()
    print(f"# load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
