"""This machine's convolution ceiling: GFLOP/s per precision and backend, the yardstick of every bench.

Plain 3x3 stride-1 convolutions of VGG-19's shapes at a 256 px input (relu2_x, relu3_x,
relu4_x/5_x; 4.8 GFLOP each), batch 1, forward, median of ``--repeat`` timed calls after
two warm-ups:

* ``torch``: eager, channels_last (what mgan runs), fp32 and bf16 weights/activations;
* ``onnxruntime`` (fp32) and ``openvino`` (f32 and bf16 inference precision), each only
  where the package is importable (skipped otherwise).

The table says the CPU kind and whether bf16 is native: where it is not (AVX2-only
CPUs), oneDNN emulates bf16 through fp32 and bf16 is several times *slower* than fp32,
which is why ``--precision auto`` picks fp32 there (:mod:`mgan.precision`). The other
bench scripts print the same header with a quicker, two-shape ceiling
(``bench/_common.py``) and their rows' share of it.

Usage::

    python bench/ceiling.py                    # ~10-30 s on 2 cores
    python bench/ceiling.py --precisions fp32 --backends torch --repeat 9
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import _common as common
import torch

SHAPES = ((128, 128, 128), (256, 256, 64), (512, 512, 32))
BACKENDS = ("torch", "onnxruntime", "openvino")


def _conv(cin: int, cout: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv2d(cin, cout, 3, padding=1).eval()


def _input(cin: int, side: int) -> torch.Tensor:
    return torch.randn(1, cin, side, side, generator=torch.Generator().manual_seed(0))


def onnxruntime_gflops(prec: str, cin: int, cout: int, side: int, repeat: int) -> float:
    """ONNX Runtime CPU (fp32 only: its CPU provider has no bf16 convolution)."""
    import onnx  # noqa: F401, PLC0415  (the exporter needs it)
    import onnxruntime as ort  # noqa: PLC0415

    if prec != "fp32":
        raise NotImplementedError("no bf16 conv in the CPU provider")
    buf = io.BytesIO()
    x = _input(cin, side)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(_conv(cin, cout), (x,), buf, input_names=["x"], output_names=["y"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return common.conv_gflop(cin, cout, side) / common.median_seconds(lambda: sess.run(None, feed), repeat)


def openvino_gflops(prec: str, cin: int, cout: int, side: int, repeat: int) -> float:
    """OpenVINO CPU plugin; ``INFERENCE_PRECISION_HINT`` f32 or bf16 (bf16 refused where not native)."""
    import openvino as ov  # noqa: PLC0415

    x = _input(cin, side)
    core = ov.Core()
    if prec == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise NotImplementedError("the CPU plugin has no bf16 on this CPU")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit tracing's deprecation notices
        model = ov.convert_model(_conv(cin, cout), example_input=x)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[prec],
                                                 "INFERENCE_NUM_THREADS": torch.get_num_threads()})
    request = compiled.create_infer_request()
    feed = {0: x.numpy()}
    return common.conv_gflop(cin, cout, side) / common.median_seconds(lambda: request.infer(feed), repeat)


def measure(backend: str, prec: str, shape: tuple[int, int, int], repeat: int) -> float | str:
    """GFLOP/s, or a short reason why this backend / precision is not measured here."""
    if backend == "torch":
        return common.torch_conv_gflops(prec, *shape, repeat=repeat)
    fn = onnxruntime_gflops if backend == "onnxruntime" else openvino_gflops
    try:
        return fn(prec, *shape, repeat)
    except ImportError as exc:
        return f"{exc.name or 'package'} not installed"
    except NotImplementedError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001  (an optional backend's failure is a table cell, not a crash)
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python bench/ceiling.py",
        description="Convolution throughput (GFLOP/s) of this machine per precision and backend: the ceiling "
        "the other benches report their share of.",
        epilog="example: python bench/ceiling.py --precisions fp32 bf16 --backends torch openvino",
    )
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS,
                   help="optional backends are skipped when not installed")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per cell (median)")
    p.add_argument("--threads", type=int, default=0, help="torch / backend threads (default: torch's choice)")
    p.add_argument("--json", type=Path, help="also write the cells as JSON lines here")
    return p


def main(argv: list[str] | None = None) -> int:
    """Print the ceiling table; 0 ok, 2 bad options."""
    args = _parser().parse_args(argv)
    if args.repeat < 1 or args.threads < 0:
        print("error: --repeat must be >= 1 and --threads >= 0", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(f"# {common.machine_line()}; load average {load[0]:.2f}")
    from mgan import precision  # noqa: PLC0415

    print(f"# {precision.describe('auto', 'cpu')}")
    cells = []
    for backend in args.backends:
        for prec in args.precisions:
            for shape in SHAPES:
                v = measure(backend, prec, shape, args.repeat)
                cells.append({"backend": backend, "precision": prec, "shape": shape, "gflops": v})
                if isinstance(v, str) and backend != "torch":
                    break  # same reason for every shape
    head = "| backend | precision | " + " | ".join(f"{ci}->{co} @ {s}^2" for ci, co, s in SHAPES) + " | best |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    best = {}
    for backend in args.backends:
        for prec in args.precisions:
            row = [c["gflops"] for c in cells if c["backend"] == backend and c["precision"] == prec]
            nums = [v for v in row if not isinstance(v, str)]
            if not nums:
                print(f"| {backend} | {prec} | skipped: {row[0]} |")
                continue
            best[(backend, prec)] = max(nums)
            print(f"| {backend} | {prec} | " + " | ".join(f"{v:.0f}" if not isinstance(v, str) else v for v in row)
                  + f" | **{max(nums):.0f}** |")
    print("GFLOP/s, batch 1, forward, median of", args.repeat)
    torch_best = {p: best[("torch", p)] for p in args.precisions if ("torch", p) in best}
    if len(torch_best) == 2:
        print(f"# torch bf16 / fp32 = {torch_best['bf16'] / torch_best['fp32']:.2f}x")
    if args.json:
        from mgan.io import atomic_write  # noqa: PLC0415

        with atomic_write(args.json, "w") as f:
            f.writelines(json.dumps(c) + "\n" for c in cells)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
