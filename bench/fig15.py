"""The MGAN paper's Fig. 15 regenerated on this CPU: seconds per image against output side.

One run times, at each square output side (256, 512, 1024, 2048 by default):

* **MGAN decode**: :class:`mgan.decode.Decoder` with ``mgan/assets/picasso.safetensors``
  (VGG-19 to relu4_1, then G; tiled past its memory budget, which is exact);
* **Texture Networks**: the style-mode pyramid generator of :mod:`mgan.texture_nets`
  (6 scales x 8 channels, photo + noise in; random weights unless
  ``--texture-nets-checkpoint``: the cost does not depend on them);
* **Perceptual**: Johnson et al.'s transformation network (:mod:`mgan.perceptual`;
  random weights unless ``--perceptual-checkpoint``);
* **Gatys**: one L-BFGS step of :class:`mgan.gatys.Gatys` (VGG-19 forward and backward
  to relu5_1), times ``--gatys-iterations`` (1000, neural-style's default);
* **CNNMRF**: one L-BFGS step at each of the 3 pyramid levels of :class:`mgan.cnnmrf.CNNMRF`,
  times ``--cnnmrf-iterations`` (100 per level, the original's).

Feed-forward methods take the median of ``--repeat`` passes, iterative ones the
median of ``--repeat`` steps, each after one untimed warm-up (oneDNN builds its
kernels on first use of a shape). One-off style statistics (Gatys' Gram targets,
CNNMRF's patch pools) and model loading are not counted. The photo is the centre
square of tubingen.jpg resized to each side; the style is picasso.jpg at 384 px for
every side (as bench/compare.py). Every engine runs in ``--precision`` (default
``auto``: bf16 where the CPU has native bf16; Texture Networks' small generator stays
fp32 under ``auto``, see :mod:`mgan.texture_nets`). A cell that runs out of memory
reads ``OOM``.

Prints a markdown table with the CPU kind (``torch.backends.cpu.get_cpu_capability()``)
and the precision, and writes a log-log plot (``--plot``) when matplotlib is installed
(``pip install -e ".[bench]"``).

    python bench/fig15.py                        # the full figure: long on 2 CPU cores
    python bench/fig15.py --sizes 256 --repeat 1 # quick check, under a minute
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _common
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
METHODS = ("mgan", "texture_nets", "perceptual", "gatys", "cnnmrf")
LABELS = {"mgan": "MGAN decode", "texture_nets": "Texture Networks", "perceptual": "Perceptual (Johnson)",
          "gatys": "Gatys", "cnnmrf": "CNNMRF"}
STYLE_SIDE = 384


def square(path: Path, side: int) -> torch.Tensor:
    """Centre square of an image resized to ``side x side``: ``[1, 3, side, side]`` in ``[0, 1]``."""
    from mgan import io

    x = io.load_image(path)
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return F.interpolate(x, size=(side, side), mode="bicubic", antialias=side < s, align_corners=False).clamp(0, 1)


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _lbfgs_step_seconds(loss_fn: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, repeat: int) -> float:
    """Median seconds of one L-BFGS iteration (one loss evaluation and its gradient) from ``start`` (0-1 image)."""
    from mgan.optim import optimize_image

    v = (start * 255.0).detach().clone().requires_grad_(True)
    return median_seconds(lambda: optimize_image(v, loss_fn, "lbfgs", 1), repeat)


# ---------------------------------------------------------------------------- one timer per method


def timer_mgan(args: argparse.Namespace, style: torch.Tensor) -> tuple[Callable[[torch.Tensor], float], str]:
    from mgan.decode import Decoder

    dec = Decoder(args.mgan_model, device="cpu", precision=args.precision)
    return (lambda photo: median_seconds(lambda: dec.decode(photo), args.repeat)), f"{args.mgan_model.name}, {dec.precision}"


def timer_texture_nets(args: argparse.Namespace, style: torch.Tensor) -> tuple[Callable[[torch.Tensor], float], str]:
    from mgan import texture_nets

    if args.texture_nets_checkpoint is not None:
        net, cfg = texture_nets.load_model(args.texture_nets_checkpoint)
        what = "trained"
    else:
        cfg = texture_nets.TextureNetsConfig.for_mode("style")
        net, what = texture_nets.build_generator(cfg).eval(), "random weights"
    if cfg.mode == "texture":
        def run(photo: torch.Tensor) -> float:
            h, w = photo.shape[-2:]
            return median_seconds(lambda: texture_nets.synthesize(net, cfg, h, w, 0, 1, "cpu", args.precision),
                                  args.repeat)
    else:
        def run(photo: torch.Tensor) -> float:
            return median_seconds(lambda: texture_nets.stylize(net, cfg, photo, 0, "cpu", args.precision),
                                  args.repeat)
    gen_prec = "bf16" if args.precision == "bf16" else "fp32"
    return run, f"{cfg.mode} mode, {cfg.scales} scales x {cfg.channels} ch, {what}, {gen_prec}"


def timer_perceptual(args: argparse.Namespace, style: torch.Tensor) -> tuple[Callable[[torch.Tensor], float], str]:
    from mgan import perceptual, precision

    if args.perceptual_checkpoint is not None:
        net, _ = perceptual.load_model(args.perceptual_checkpoint)
        what = "trained"
    else:
        net, what = perceptual.build_network(perceptual.PerceptualConfig()).eval(), "random weights"
    return ((lambda photo: median_seconds(lambda: perceptual.apply(net, photo, "cpu", args.precision), args.repeat)),
            f"{what}, {precision.resolve(args.precision, 'cpu')}")


def timer_gatys(args: argparse.Namespace, style: torch.Tensor) -> tuple[Callable[[torch.Tensor], float], str]:
    from mgan.gatys import Gatys, GatysConfig

    engine = Gatys(style, GatysConfig(style_size=STYLE_SIDE, precision=args.precision))
    grams = engine.style_grams(1.0)

    def run(photo: torch.Tensor) -> float:
        with torch.no_grad():
            target = engine.encoder(photo, [engine.cfg.content_layer])[engine.cfg.content_layer].float()
        loss_fn = functools.partial(engine.loss, grams=grams, content_target=target)
        return args.gatys_iterations * _lbfgs_step_seconds(loss_fn, photo, args.repeat)

    return run, f"{args.gatys_iterations} L-BFGS steps, {engine.precision}"


def timer_cnnmrf(args: argparse.Namespace, style: torch.Tensor) -> tuple[Callable[[torch.Tensor], float], str]:
    from mgan.cnnmrf import CNNMRF, CNNMRFConfig

    engine = CNNMRF(style, CNNMRFConfig(style_size=STYLE_SIDE, precision=args.precision))
    cfg = engine.cfg

    def run(photo: torch.Tensor) -> float:
        total = 0.0
        for level in range(cfg.levels):  # the same sizes as CNNMRF.run's pyramid
            scale = 1.0 / 2 ** (cfg.levels - 1 - level)
            side = round(photo.shape[-1] * scale)
            p = photo if side == photo.shape[-1] else F.interpolate(
                photo, size=(side, side), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
            pool = engine.style_pool(scale)  # one-off per style: not timed
            with torch.no_grad():
                target = engine.encoder(p, [cfg.content_layer])[cfg.content_layer].float()
            loss_fn = functools.partial(engine.loss, pool=pool, content_target=target)
            total += args.cnnmrf_iterations * _lbfgs_step_seconds(loss_fn, p, args.repeat)
        return total

    return run, f"{cfg.levels} levels x {args.cnnmrf_iterations} L-BFGS steps, {engine.precision}"


TIMERS = {"mgan": timer_mgan, "texture_nets": timer_texture_nets, "perceptual": timer_perceptual,
          "gatys": timer_gatys, "cnnmrf": timer_cnnmrf}


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "DefaultCPUAllocator" in str(exc) or "out of memory" in str(exc).lower()


# ---------------------------------------------------------------------------- report


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "OOM"
    if seconds < 1:
        return f"{1000 * seconds:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 600 else f"{seconds / 60:.0f} min"


def table(results: dict[str, dict[int, float | None]], sizes: list[int]) -> str:
    """Markdown table: one row per side, one column per method, and each method's factor over MGAN decode."""
    methods = list(results)
    head = ["side", *[LABELS[m] for m in methods]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for side in sizes:
        base = results.get("mgan", {}).get(side)
        cells = []
        for m in methods:
            s = results[m].get(side)
            ratio = ""
            if base and s is not None and m != "mgan":
                ratio = f" ({s / base:.1f}x)" if s / base < 10 else f" ({s / base:.0f}x)"
            cells.append(_fmt(s) + ratio)
        lines.append(f"| {side} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, dict[int, float | None]], caption: str, path: Path) -> bool:
    """Log-log seconds per image against side, one line per method; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for m, per_side in results.items():
        pts = sorted((s, t) for s, t in per_side.items() if t is not None)
        if pts:
            ax.plot([s for s, _ in pts], [t for _, t in pts], marker="o", label=LABELS[m])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sides = sorted({s for per in results.values() for s in per})
    ax.set_xticks(sides, [str(s) for s in sides])
    ax.set_xlabel("output side (px, square)")
    ax.set_ylabel("seconds per image")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("MGAN Fig. 15 on this CPU", fontsize=10)
    fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048], help="square output sides")
    p.add_argument("--repeat", type=int, default=3, help="timed passes (or steps) per cell, median")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--photo", type=Path, default=DATA / "photo" / "tubingen.jpg")
    p.add_argument("--style", type=Path, default=DATA / "style" / "picasso.jpg")
    p.add_argument("--mgan-model", type=Path, default=ROOT / "mgan" / "assets" / "picasso.safetensors")
    p.add_argument("--texture-nets-checkpoint", type=Path, default=None)
    p.add_argument("--perceptual-checkpoint", type=Path, default=None)
    p.add_argument("--gatys-iterations", type=int, default=1000, help="full Gatys run (neural-style's default)")
    p.add_argument("--cnnmrf-iterations", type=int, default=100, help="per pyramid level (the original's)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--plot", type=Path, default=ROOT / "out" / "fig15.png", help="PNG plot (needs matplotlib)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods or args.repeat < 1 or min(args.sizes) < 64 or args.gatys_iterations < 1 \
            or args.cnnmrf_iterations < 1:
        print(f"error: methods from {','.join(METHODS)} (got {bad or 'none'}), --repeat >= 1, --sizes >= 64, "
              "iterations >= 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from mgan import io, precision

    try:
        io.probe_image(args.photo, min_side=16)
        style = io.load_image(args.style, max_side=STYLE_SIDE)
        if "mgan" in methods and not args.mgan_model.is_file():
            raise io.InputError(f"--mgan-model {args.mgan_model} not found")
    except io.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sizes = sorted(set(args.sizes))
    photos = {side: square(args.photo, side) for side in sizes}
    machine = _common.machine_line()
    prec_line = precision.describe(args.precision, "cpu")
    print(f"# {machine}\n# {prec_line}")
    print(f"# torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}; photo {args.photo.name} (centre "
          f"square), style {args.style.name} at {STYLE_SIDE} px; median of {args.repeat}", flush=True)
    results: dict[str, dict[int, float | None]] = {}
    notes: dict[str, str] = {}
    for m in methods:
        run, notes[m] = TIMERS[m](args, style)
        results[m] = {}
        for side in sizes:
            try:
                results[m][side] = run(photos[side])
            except (RuntimeError, MemoryError) as exc:
                if not _out_of_memory(exc):
                    raise
                results[m][side] = None
            print(f"  {LABELS[m]} {side}px: {_fmt(results[m][side])}  (load {os.getloadavg()[0]:.1f})", flush=True)
        del run
    md = table(results, sizes)
    print(f"\nSeconds per image (x MGAN decode). {machine}; {prec_line}.\n")
    print(md)
    print()
    for m in methods:
        print(f"- {LABELS[m]}: {notes[m]}")
    print("paper (Titan X, Sec. 5): MGAN decode >= 500x faster than Gatys, ~5000x faster than CNNMRF")
    caption = f"{machine}; {prec_line}"
    if plot(results, caption, args.plot):
        print(f"\nwrote {args.plot}")
    else:
        print("\nno plot: matplotlib is not installed (pip install -e '.[bench]')")
    if args.json is not None:
        from mgan.io import atomic_write

        with atomic_write(args.json, "w") as f:
            json.dump({"machine": machine, "precision": prec_line, "notes": notes,
                       "seconds": {m: {str(s): t for s, t in r.items()} for m, r in results.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
