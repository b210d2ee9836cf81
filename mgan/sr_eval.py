"""Score super-resolution networks against bicubic upsampling (Johnson et al. 2016, Sec. 4.2; seed 002).

Johnson et al. train one SR network with the relu2_2 feature loss and the same network with
the per-pixel loss (``python -m mgan.perceptual train --task sr [--loss mse]``), and compare
them with bicubic upsampling: the pixel-loss net wins on PSNR and SSIM, the perceptual net
gives sharper, more detailed images. This module measures both sides of that claim. For
each high-resolution photo ("ground truth"):

1. **crop** the bottom and right edges so both sides are multiples of the scale (the SR
   literature's "modcrop"): the low-resolution input is then exactly ``1/scale`` of the
   photo and every output lines up with it pixel for pixel;
2. **degrade** it as in training (:func:`mgan.perceptual.degrade`: Gaussian blur sigma 1,
   bicubic downsampling by the scale): ``[1, 3, H, W]`` -> ``[1, 3, H/s, W/s]``;
3. **upsample** that input with bicubic interpolation (the baseline) and with each network
   (one forward pass, :func:`mgan.perceptual.apply`): ``[1, 3, H, W]`` each;
4. **score** every output, rounded to 8 bits as a saved image would be, against the photo
   with ``scale`` px cropped from each side (the border an upsampler has no context for):

   * PSNR and SSIM on the BT.601 luminance (:func:`mgan.metrics.psnr`, :func:`mgan.metrics.ssim`),
     the numbers SR papers report; higher is closer;
   * **relu2_2 distance** ``||phi(out) - phi(gt)||^2 / ||phi(gt)||^2`` in one fp32 VGG-19
     (the perceptual net's own training layer, so it favours that net as PSNR favours the
     pixel-loss net; 0 = same features);
   * **time** per image of the upsampling alone (each network first runs once untimed at each
     photo's size: a new input shape pays for allocation and kernel selection).

Writes ``table.md`` (mean per method), ``results.json`` (settings, per-photo scores, means)
and ``figure.png`` (one row per photo: bicubic | each network | ground truth).

CLI::

    python -m mgan.sr_eval --photos set5/ --scale 4 --out sr_eval/ \\
        --net perceptual=runs/00000-perceptual-sr4/final.pt --net mse=runs/00001-perceptual-sr4-mse/final.pt
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from mgan import cli, io, metrics, perceptual, vgg
from mgan import precision as prec
from mgan.cli import resolve_device
from mgan.errors import ConfigError, InputError
from mgan.perceptual import PerceptualConfig, TransformNet

FEATURE_LAYER = "relu2_2"  # Johnson et al.'s SR feature loss layer
BASELINE = "bicubic"
GROUND_TRUTH = "ground truth"

Networks = dict[str, tuple[TransformNet, PerceptualConfig, int]]  # name -> (network, its config, training steps)


@dataclass
class SREvalConfig:
    """Settings of an SR evaluation."""

    scale: int = 4  # upsampling factor: 2, 4 or 8, the networks' upscale
    max_side: int = 0  # resize each photo's longest side to this first (0: photos as they are)
    precision: str = "fp32"  # of the networks; fp32 by default so PSNR is not shifted by bf16 rounding

    def validate(self) -> None:
        """Raise ConfigError for impossible values."""
        if self.scale not in (2, 4, 8):
            raise ConfigError(f"scale: must be 2, 4 or 8, got {self.scale}")
        if self.max_side and self.max_side < self.min_side:
            raise ConfigError(f"max_side: must be 0 or >= {self.min_side}, got {self.max_side}")
        prec.check(self.precision)

    @property
    def min_side(self) -> int:
        """Smallest photo side: SSIM's window must fit after the crops (a multiple of the scale)."""
        need = 2 * self.scale + metrics.SSIM_WINDOW
        # and the network's input (side / scale) must be > 4 px for its first conv's reflection pad
        return max(-(-need // self.scale) * self.scale, 5 * self.scale)


# ---------------------------------------------------------------------------- stages


def crop_to_scale(hr: Tensor, scale: int) -> Tensor:
    """``[N, 3, H, W]`` -> ``[N, 3, H - H mod s, W - W mod s]`` (bottom and right rows dropped, "modcrop")."""
    h, w = hr.shape[-2] // scale * scale, hr.shape[-1] // scale * scale
    return hr[..., :h, :w]


def bicubic(lr: Tensor, scale: int) -> Tensor:
    """The baseline: bicubic upsampling ``[N, 3, h, w]`` -> ``[N, 3, s h, s w]``, clamped to ``[0, 1]``."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def as_saved(x: Tensor) -> Tensor:
    """``x`` rounded to 8 bits (as :func:`mgan.io.save_image` writes it), back in ``[0, 1]`` float."""
    return io.quantize(x).float().div_(255.0)


class SRScorer:
    """PSNR, SSIM (Y, ``border`` px cropped) and the relu2_2 distance of outputs to their ground truth.

    Args:
        border: pixels cropped from each side before every measure (the scale, by convention).
        encoder: optional fp32 VGG with a ``relu2_2`` tap (built if not given).
    """

    def __init__(self, border: int, device: torch.device | str = "cpu", encoder: vgg.VGG19Encoder | None = None) -> None:
        self.border = border
        self.device = torch.device(device)
        if encoder is not None and FEATURE_LAYER not in encoder.layers:
            raise ValueError(f"the shared encoder lacks the {FEATURE_LAYER} tap")
        self.encoder = encoder or vgg.shared_encoder((FEATURE_LAYER,), precision="fp32", device=str(self.device))

    @torch.no_grad()
    def score(self, out: Tensor, gt: Tensor) -> dict[str, float]:
        """Scores of one output ``[1, 3, H, W]`` against its ground truth (same shape), both in ``[0, 1]``."""
        b = self.border
        row = {"psnr": float(metrics.psnr(out, gt, border=b)[0]), "ssim": float(metrics.ssim(out, gt, border=b)[0])}
        crop = (slice(None), slice(None), slice(b, -b or None), slice(b, -b or None))
        fo = self.encoder(out[crop].to(self.device), [FEATURE_LAYER])[FEATURE_LAYER].float()
        fg = self.encoder(gt[crop].to(self.device), [FEATURE_LAYER])[FEATURE_LAYER].float()
        row["feature"] = float((fo - fg).pow(2).sum() / fg.pow(2).sum().clamp_min(1e-12))
        return row


def load_networks(specs: list[tuple[str, Path]], scale: int) -> Networks:
    """``{name: (network, config, training steps)}`` of ``NAME=final.pt`` specs; InputError for a
    checkpoint that is not a perceptual sr network of this ``scale``, or a clashing name."""
    nets: Networks = {}
    for name, path in specs:
        if name in nets or name in (BASELINE, GROUND_TRUTH):
            raise InputError(f"--net {name}={path}: the name {name!r} is "
                             f"{'given twice' if name in nets else 'taken by a figure column'}; give another")
        path = perceptual.resolve_checkpoint(path)  # a bundled name (sr4) or a file
        io.check_regular_file(path, "checkpoint")
        net, cfg = perceptual.load_model(path)
        if cfg.task != "sr":
            raise InputError(f"--net {name}={path}: a style-transfer network (task {cfg.task}), not super-resolution")
        if cfg.upscale != scale:
            raise InputError(f"--net {name}={path}: trained for x{cfg.upscale}, not --scale {scale}")
        nets[name] = (net, cfg, int(io.load_checkpoint(path).get("step", -1)))
    return nets


def load_photos(paths: list[Path], cfg: SREvalConfig) -> dict[str, Tensor]:
    """``{stem: [1, 3, H, W]}`` ground truths (files, or every image of a folder), cropped to multiples of the scale."""
    files: list[Path] = []
    for p in paths:
        files += io.list_images(p) if p.is_dir() else [io.check_regular_file(p, "photo")]
    photos: dict[str, Tensor] = {}
    for f in files:
        if f.stem in photos:  # scores and figure rows are keyed by the stem
            raise InputError(f"two photos share the name {f.stem!r}; give photos with distinct names")
        img = io.load_image(f, max_side=cfg.max_side or None, min_side=cfg.min_side)
        photos[f.stem] = crop_to_scale(img, cfg.scale)
    return photos


def _timed(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, float]:
    t0 = time.perf_counter()
    y = fn(x)  # perceptual.apply returns a CPU tensor, so a CUDA run has finished here
    return y, time.perf_counter() - t0


def evaluate(
    photos: dict[str, Tensor],
    nets: Networks,
    cfg: SREvalConfig,
    scorer: SRScorer,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, dict[str, dict[str, float]]], list[list[Tensor]]]:
    """Upsample every photo's degraded version with bicubic and each network, and score the results.

    Returns:
        ``{method: {stem: {"psnr", "ssim", "feature", "seconds"}}}`` (bicubic first, then the
        networks in the given order) and the figure's rows ``[bicubic, *networks, ground truth]``
        of ``[1, 3, H, W]`` images.
    """
    methods: dict[str, Callable[[Tensor], Tensor]] = {BASELINE: lambda lr: bicubic(lr, cfg.scale)}
    for name, (net, _, _) in nets.items():
        def apply(lr: Tensor, net: TransformNet = net) -> Tensor:  # net bound now, not at call time
            return perceptual.apply(net, lr, device, cfg.precision)

        methods[name] = apply
    results: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    rows: list[list[Tensor]] = []
    for stem, gt in photos.items():
        lr = perceptual.degrade(gt, cfg.scale)
        row = []
        for m, fn in methods.items():
            if m != BASELINE:  # warm-up at this photo's size: each new shape pays for allocation and kernel selection
                fn(lr)
            out, seconds = _timed(fn, lr)
            out = as_saved(out)
            results[m][stem] = {**scorer.score(out, gt), "seconds": seconds}
            row.append(out)
        rows.append([*row, gt])
    return results, rows


# ---------------------------------------------------------------------------- report


def summarize(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean of every score over photos, per method (PSNR: the mean of per-image dB, as SR papers)."""
    return {m: {k: sum(r[k] for r in rows.values()) / len(rows) for k in next(iter(rows.values()))}
            for m, rows in results.items() if rows}


def table(summary: dict[str, dict[str, float]], scale: int) -> str:
    """Markdown table of the per-method means."""
    lines = [f"| method (x{scale}) | PSNR Y (dB) | SSIM Y | {FEATURE_LAYER} dist. | time/img |", "|---|---|---|---|---|"]
    for m, r in summary.items():
        t = r["seconds"]
        lines.append(f"| {m} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['feature']:.4f} | "
                     f"{f'{1000 * t:.0f} ms' if t < 1 else f'{t:.1f} s'} |")
    return "\n".join(lines)


def write_report(out_dir: Path, cfg: SREvalConfig, photos: list[str], nets: Networks, specs: list[tuple[str, Path]],
                 results: dict[str, dict[str, dict[str, float]]], rows: list[list[Tensor]]) -> list[Path]:
    """Write ``table.md``, ``results.json`` and ``figure.png`` into ``out_dir``; returns their paths."""
    summary = summarize(results)
    columns = [BASELINE, *nets, GROUND_TRUTH]
    text = table(summary, cfg.scale) + (
        f"\n\nPSNR and SSIM on BT.601 Y, {cfg.scale} px border cropped, higher is closer; {FEATURE_LAYER} dist. "
        f"= ||phi(out) - phi(gt)||^2 / ||phi(gt)||^2 (fp32 VGG-19), lower is closer. Mean over {len(photos)} "
        f"photo{'s' if len(photos) != 1 else ''}. figure.png columns: {' | '.join(columns)}.\n")
    table_path, json_path = out_dir / "table.md", out_dir / "results.json"
    with io.atomic_write(table_path, "w") as f:
        f.write(text)
    checkpoints = {name: {"path": str(path), "step": nets[name][2], "loss": nets[name][1].loss}
                   for name, path in specs}
    with io.atomic_write(json_path, "w") as f:
        json.dump({"config": asdict(cfg), "feature_layer": FEATURE_LAYER, "photos": photos, "networks": checkpoints,
                   "figure_columns": columns, "per_photo": results, "mean": summary}, f, indent=1)
    figure = io.save_image(io.make_grid(rows), out_dir / "figure.png")
    return [table_path, json_path, figure]


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    d = SREvalConfig()
    p = argparse.ArgumentParser(
        prog="python -m mgan.sr_eval",
        description="Super-resolution evaluation (Johnson et al. 2016): degrade high-resolution photos (blur + "
        "bicubic downsampling), upsample them with bicubic and with trained perceptual sr networks, report PSNR and "
        "SSIM on Y, the relu2_2 feature distance and the time per image, and write a side-by-side figure. Photo "
        "sides are cropped (bottom, right) to multiples of the scale.",
        epilog="example: python -m mgan.sr_eval --photos set5/ --scale 4 --out sr_eval/ "
        "--net perceptual=runs/00000-perceptual-sr4/final.pt --net mse=runs/00001-perceptual-sr4-mse/final.pt",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--photos", type=Path, nargs="+", required=True, help="high-resolution photos and/or folders of them")
    p.add_argument("--net", type=cli.named_path("CHECKPOINT"), action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="a trained sr network (python -m mgan.perceptual train --task sr), e.g. "
                   "perceptual=RUN/final.pt; repeatable (none: bicubic only)")
    p.add_argument("--scale", type=int, default=d.scale, help="upsampling factor (the networks' upscale): 2, 4 or 8")
    p.add_argument("--out", type=Path, required=True, help="output folder (table.md, results.json, figure.png)")
    p.add_argument("--max-side", type=int, default=d.max_side, help="resize each photo's longest side first (0: no)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=prec.CHOICES, default=d.precision,
                   help="of the networks (scoring is fp32): fp32, so that bf16 rounding does not shift PSNR; "
                   "bf16; or auto, bf16 where the hardware runs it natively")
    p.add_argument("--max-pixels", type=int, default=None, help="raise the decompression-bomb limit")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 ok, 1 failed, 2 bad input, 130 interrupted (mgan.cli.run)."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _run(args), args=args, interrupted="interrupted; nothing written")


def _run(args: argparse.Namespace) -> int:
    io.set_max_pixels(args.max_pixels)
    cfg = SREvalConfig(scale=args.scale, max_side=args.max_side, precision=args.precision)
    cfg.validate()
    device = resolve_device(args.device)
    nets = load_networks(args.net, cfg.scale)  # every input is checked before the first forward pass
    photos = load_photos(args.photos, cfg)
    io.check_outputs([("--out", args.out), *[("--out", args.out / n) for n in ("table.md", "results.json", "figure.png")]],
                     [*[("--photos", p) for p in args.photos], *[("--net", path) for _, path in args.net]])
    io.check_writable(args.out)
    if nets:
        prec.announce(cfg.precision, device)
    results, rows = evaluate(photos, nets, cfg, SRScorer(cfg.scale, device), device)
    written = write_report(args.out, cfg, list(photos), nets, args.net, results, rows)
    print((args.out / "table.md").read_text(), end="")
    print(f"\nwrote {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
