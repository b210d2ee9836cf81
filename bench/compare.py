"""Wall time of every system on the same 384x384 photo and style, in one run, with ratios.

Systems: MGAN feed-forward decode (the released generator if present, else an untrained
G of the same architecture: the cost is the same), MDAN, our Gatys (bf16 and fp32), the
``pastiche`` CLI (an external Gatys, as a check that ours is not slow), CNNMRF, and the
Johnson perceptual network (one forward pass).

The iterative methods run a reduced number of steps (``--steps``, the same count for
ours and pastiche) and their full runs are extrapolated from the per-step time:
Gatys and pastiche to 1000 L-BFGS steps (neural-style's default), MDAN to 125
iterations (the paper), CNNMRF to 3 levels x 100 iterations (the original) from 3 levels x
``--steps``, plus the style-pool setup (timed apart). Feed-forward methods
take the median of ``--repeats`` passes after one warm-up pass.

The paper (Sec. 5, Fig. 15) reports MGAN decoding ~500x faster than Gatys and ~5000x
faster than CNNMRF on a Titan X.

    python bench/compare.py                      # ~10-15 min on 2 busy CPU cores
    python bench/compare.py --steps 5 --skip pastiche
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _common
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
SYSTEMS = ("mgan", "mdan", "gatys", "gatys-fp32", "pastiche", "cnnmrf", "perceptual")


def square(path: Path, size: int) -> torch.Tensor:
    """Centre square crop of an image, resized to ``size x size``: ``[1, 3, size, size]``."""
    from mgan import io

    x = io.load_image(path)
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_mgan(content: torch.Tensor, model: Path, repeats: int) -> tuple[float, str]:
    from mgan.decode import Decoder
    from mgan.generator import Generator

    if model.is_file():
        dec, what = Decoder(model, device="cpu", precision="auto"), model.name
    else:
        dec, what = Decoder(Generator(), device="cpu", precision="auto"), "untrained G (no release yet)"
    return median_time(lambda: dec.decode(content), repeats), f"{what}, {dec.precision}"


def time_perceptual(content: torch.Tensor, checkpoint: Path | None, repeats: int) -> tuple[float, str]:
    from mgan import perceptual

    if checkpoint is not None:
        net, _ = perceptual.load_model(checkpoint)
        what = "trained net, fp32"
    else:
        net, what = perceptual.build_network(perceptual.PerceptualConfig()), "untrained net (same cost), fp32"
    fp32 = median_time(lambda: perceptual.apply(net, content), repeats)
    bf16 = median_time(lambda: perceptual.apply(net, content, precision="bf16"), repeats)
    return (min(fp32, bf16), what.replace("fp32", "bf16 autocast") if bf16 < fp32 else what)


def time_mdan(content: torch.Tensor, style: torch.Tensor, steps: int) -> tuple[float, float]:
    """(seconds per iteration, setup seconds)."""
    from mgan.mdan import MDAN, MDANConfig

    cfg = MDANConfig(size=content.shape[-1], style_size=384)
    t = time.perf_counter()
    m = MDAN(style, cfg)
    setup = time.perf_counter() - t
    m.synthesize(content, iterations=2)  # warm-up: oneDNN primitive creation
    _, stats = m.synthesize(content, iterations=steps)
    return stats.seconds / steps, setup


def time_gatys(content: torch.Tensor, style: torch.Tensor, steps: int, precision: str) -> float:
    """Seconds per L-BFGS step (one VGG forward+backward to relu5_1)."""
    from mgan.gatys import Gatys, GatysConfig

    g = Gatys(style, GatysConfig(size=content.shape[-1], style_size=384, iterations=2, precision=precision))
    g.run(content)  # warm-up
    g.cfg.iterations = steps
    _, stats = g.run(content)
    return stats.seconds / steps


def time_pastiche(content: torch.Tensor, style_path: Path, steps: int) -> tuple[float, float]:
    """(seconds per L-BFGS step, startup seconds) of the pastiche CLI, from a 1-step and an N+1-step run."""
    from mgan import io

    exe = shutil.which("pastiche")
    if exe is None:
        raise FileNotFoundError("pastiche CLI not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        io.save_image(content, f"{tmp}/content.png")
        walls = []
        for n in (1, steps + 1):
            cmd = [exe, "--content", f"{tmp}/content.png", "--styles", str(style_path), "--output", f"{tmp}/out.png",
                   "--size", str(content.shape[-1]), "--style-size", "384", "--num-steps", str(n), "--no-verbose",
                   "--device", "cpu", "--seed", "0"]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=os.environ.copy())
            walls.append(time.perf_counter() - t)
    per_step = (walls[1] - walls[0]) / steps
    return per_step, walls[0] - per_step


def time_cnnmrf(content: torch.Tensor, style: torch.Tensor, steps: int) -> tuple[float, float]:
    """(seconds of ``steps`` L-BFGS iterations on every pyramid level, style-pool setup seconds)."""
    from mgan.cnnmrf import CNNMRF, CNNMRFConfig

    cfg = CNNMRFConfig(size=content.shape[-1], style_size=384, iterations=steps)
    m = CNNMRF(style, cfg)
    t = time.perf_counter()
    for level in range(cfg.levels):  # the per-level style pools are cached by the engine
        m.style_pool(1.0 / 2 ** (cfg.levels - 1 - level))
    setup = time.perf_counter() - t
    _, stats = m.run(content)
    return stats.seconds, setup


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photo", type=Path, default=DATA / "photo" / "tubingen.jpg")
    p.add_argument("--style", type=Path, default=DATA / "style" / "picasso.jpg")
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--steps", type=int, default=10, help="timed steps of each iterative method (same for all)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes of each feed-forward method")
    p.add_argument("--mgan-model", type=Path, default=ROOT / "mgan" / "assets" / "picasso.safetensors")
    p.add_argument("--perceptual-checkpoint", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads for every system, pastiche included (default: torch's)")
    p.add_argument("--skip", default="", help=f"comma-separated systems to skip: {','.join(SYSTEMS)}")
    args = p.parse_args(argv)
    from mgan import io

    try:
        if args.steps < 2 or args.repeats < 1 or args.size < 64:
            raise io.InputError("--steps must be >= 2, --repeats >= 1, --size >= 64")
        skip = {s.strip() for s in args.skip.split(",") if s.strip()}
        if skip - set(SYSTEMS):
            raise io.InputError(f"--skip: unknown system(s) {sorted(skip - set(SYSTEMS))}")
        content = square(args.photo, args.size)
        style = io.load_image(args.style, max_side=384)
    except io.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the pastiche subprocess
    load0 = os.getloadavg()[0]
    _common.print_header(prefix="")
    from mgan import precision

    auto = precision.resolve("auto", "cpu")  # what MDAN, CNNMRF and the decode run in (their default)
    print(precision.describe("auto", "cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load0:.1f}; "
          f"{args.size}x{args.size} {args.photo.name} x {args.style.name}; {args.steps} timed steps per iterative "
          f"method", flush=True)
    rows: list[tuple[str, str, float, str, float, float]] = []  # name, measured, per-step, full label, full s, load

    def done(name: str, measured: str, per: float, full_label: str, full: float) -> None:
        rows.append((name, measured, per, full_label, full, os.getloadavg()[0]))
        print(f"  {name}: {full:.2f} s ({full_label})", flush=True)

    if "mgan" not in skip:
        t, what = time_mgan(content, args.mgan_model, args.repeats)
        done(f"MGAN decode ({what})", f"median of {args.repeats}", t, "1 pass", t)
    if "perceptual" not in skip:
        t, what = time_perceptual(content, args.perceptual_checkpoint, args.repeats)
        done(f"Perceptual net ({what})", f"median of {args.repeats}", t, "1 pass", t)
    if "mdan" not in skip:
        per, setup = time_mdan(content, style, args.steps)
        done(f"MDAN ({auto})", f"{args.steps} iterations", per, "125 iterations + setup", 125 * per + setup)
    if "gatys" not in skip:
        per = time_gatys(content, style, args.steps, "bf16")
        done("Gatys, ours (bf16 VGG)", f"{args.steps} L-BFGS steps", per, "1000 steps", 1000 * per)
    # ours fp32 right before pastiche (fp32): the closest pair, timed back to back
    if "gatys-fp32" not in skip:
        per = time_gatys(content, style, args.steps, "fp32")
        done("Gatys, ours (fp32)", f"{args.steps} L-BFGS steps", per, "1000 steps", 1000 * per)
    if "pastiche" not in skip:
        try:
            per, startup = time_pastiche(content, args.style, args.steps)
            done("Gatys, pastiche CLI (fp32)", f"{args.steps} L-BFGS steps", per, "1000 steps + startup",
                 1000 * per + startup)
        except (FileNotFoundError, subprocess.CalledProcessError) as exc:
            print(f"  pastiche skipped: {exc}", file=sys.stderr)
    if "cnnmrf" not in skip:
        run, setup = time_cnnmrf(content, style, args.steps)
        done(f"CNNMRF ({auto})", f"3 levels x {args.steps} L-BFGS its", run / (3 * args.steps),
             "3 levels x 100 its + style pool", run * 100 / args.steps + setup)
    base = next((r[4] for r in rows if r[0].startswith("MGAN")), None)
    print("\n(load avg: 1-minute load when the row finished; on a shared machine absolute times are noisy)\n")
    print("| system | measured | s / step (or pass) | full run | s / full run | x MGAN decode | load avg |")
    print("|---|---|---|---|---|---|---|")
    for name, measured, per, label, full, load in rows:
        ratio = f"{full / base:.0f}x" if base else "n/a"
        print(f"| {name} | {measured} | {per:.3f} | {label} | {full:.1f} | {ratio} | {load:.1f} |")
    per_step = {r[0]: r[2] for r in rows}
    ours, theirs = per_step.get("Gatys, ours (fp32)"), per_step.get("Gatys, pastiche CLI (fp32)")
    if ours and theirs:
        print(f"\nper L-BFGS step: ours fp32 / pastiche fp32 = {ours / theirs:.2f}; "
              f"ours bf16 / pastiche = {per_step.get('Gatys, ours (bf16 VGG)', float('nan')) / theirs:.2f}")
    print("paper (Titan X): MGAN ~500x faster than Gatys, ~5000x faster than CNNMRF")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
