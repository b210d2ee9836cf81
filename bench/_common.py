"""What every bench table is measured against: the CPU kind and the machine's conv ceiling.

A time means little across machines (the CPUs this project runs on change from day
to day: AMX Xeon, AVX-512-bf16 EPYC, AVX2-only EPYC), and one machine is also shared
with other jobs. So each bench prints, in the same run, one header line

    CPU: AVX-512-bf16 (torch AVX512, 2 threads), native bf16: yes, ceiling fp32 48 GFLOP/s, bf16 69 GFLOP/s

where the ceiling is the best median throughput of plain 3x3 VGG-like convolutions
(batch 1, channels_last, torch eager, forward) in that precision, and, where a row
has a known FLOP count, its share of that ceiling. ``python bench/ceiling.py`` prints
the full table (more shapes, and ONNX Runtime / OpenVINO where installed).

Imported by the scripts beside it (``python bench/x.py`` puts ``bench/`` on the path).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from mgan import precision

# (C_in, C_out, side): VGG-19's relu3_x and relu4_x/relu5_x convolutions at 256 px input
# (4.8 GFLOP each); batch 1 as in decoding and MDAN.
QUICK_SHAPES = ((256, 256, 64), (512, 512, 32))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def conv_gflop(cin: int, cout: int, side: int, k: int = 3) -> float:
    """GFLOP (2 x MACs) of one ``k x k`` stride-1 'same' convolution on a ``side x side`` map, batch 1."""
    return 2.0 * cin * cout * k * k * side * side / 1e9


def median_seconds(fn: Callable[[], object], repeat: int = 5, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_conv_gflops(prec: str, cin: int, cout: int, side: int, repeat: int = 5) -> float:
    """Median GFLOP/s of one torch eager channels_last 3x3 conv in ``prec`` ("fp32" / "bf16") on the CPU."""
    dtype = DTYPES[prec]
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1).to(dtype, memory_format=torch.channels_last).eval()
    x = torch.randn(1, cin, side, side, generator=torch.Generator().manual_seed(0))
    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        s = median_seconds(lambda: conv(x), repeat)
    return conv_gflop(cin, cout, side) / s


def ceiling(precisions: Sequence[str] = ("fp32", "bf16"), shapes: Sequence[tuple[int, int, int]] = QUICK_SHAPES,
            repeat: int = 5) -> dict[str, float]:
    """``{precision: GFLOP/s}``: the best over ``shapes`` of the median torch conv throughput (a few seconds)."""
    return {p: max(torch_conv_gflops(p, *s, repeat=repeat) for s in shapes) for p in precisions}


def machine_line() -> str:
    """``CPU: AVX-512-bf16 (torch AVX512, 2 threads), native bf16: yes``."""
    return (f"CPU: {precision.cpu_kind()} (torch {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads), native bf16: {'yes' if precision.native_bf16('cpu') else 'no'}")


def header(ceil: dict[str, float]) -> str:
    """The one line every bench prints: :func:`machine_line` and the ceiling per precision."""
    parts = ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in ceil.items())
    return f"{machine_line()}, ceiling {parts}"


def print_header(precisions: Sequence[str] = ("fp32", "bf16"), prefix: str = "# ") -> dict[str, float]:
    """Measure the ceiling now (same run, same load as the bench), print :func:`header`, return the ceiling."""
    ceil = ceiling(precisions)
    print(prefix + header(ceil), flush=True)
    return ceil


def share(gflop: float, seconds: float, ceil_gflops: float | None) -> str:
    """``"63%"``: achieved ``gflop / seconds`` as a share of ``ceil_gflops`` (``"-"`` if unknown)."""
    if not ceil_gflops or seconds <= 0:
        return "-"
    return f"{100 * gflop / seconds / ceil_gflops:.0f}%"


def vgg_gflop(layer: str, height: int, width: int) -> float:
    """GFLOP of VGG-19's convolutions from the input up to ``layer`` (e.g. ``relu5_1``) on an ``height x width`` image.

    One forward pass; a backward pass to the input costs about twice that (input and
    weight gradients: the weights are frozen here, so about once more).
    """
    from mgan.vgg import LAYER_NAMES, channels  # noqa: PLC0415

    total, cin, scale = 0.0, 3, 1
    for name in LAYER_NAMES:
        if name.startswith("pool"):
            scale *= 2
        elif name.startswith("conv"):
            cout = channels(name)
            total += 2.0 * cin * cout * 9 * (height // scale) * (width // scale) / 1e9
            cin = cout
        if name == layer:
            return total
    raise ValueError(f"not a VGG-19 layer: {layer!r}")
