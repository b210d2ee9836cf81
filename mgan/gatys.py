"""Gatys et al.: Gram-matrix texture synthesis and neural style transfer (seeds 000, 001, 002, 004).

Texture synthesis (Gatys, Ecker & Bethge, NIPS 2015): starting from noise, find an
image whose Gram matrices ``G^l = F^l F^l^T`` on relu1_1 ... relu5_1 match the
texture's::

    L_style(x) = sum_l w_l E_l,   E_l = mean_ij (G^l_ij(x) - A^l_ij)^2          (seed 000, Eq. E_l)

Style transfer (Gatys, Ecker & Bethge, CVPR 2016) adds a feature reconstruction
term on relu4_2 and a TV prior::

    L(x) = alpha L_content(x, p) + beta L_style(x, a) + gamma TV(x)             (seed 002, Eq. 5)

Normalisation follows neural-style (jcjohnson), whose defaults we keep: Gram
matrices divided by ``C * H * W`` and averaged over their ``C^2`` entries, the
content term a mean squared error, ``alpha = 5``, ``beta = 100``, ``gamma = 1e-3``
on the 0-255 image (the Caffe VGG sees the same 0-255 scale). The optimised variable
is the RGB image in 0-255 units, so Adam's ``lr = 10`` and L-BFGS's ``lr = 1`` mean
what they mean in neural-style.

Options: max or average pooling, init from the photo or noise, L-BFGS or Adam,
coarse-to-fine levels (each level doubles the side and starts from the previous
result, upsampled), and original-colour preservation (luminance from the result,
chrominance from the photo, in YUV).

CLI::

    python -m mgan.gatys --style picasso.jpg --content tubingen.jpg --out out.png
    python -m mgan.gatys --style pebbles.jpg --size 256 --out texture.png      # texture synthesis
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from mgan import cli, io, losses, precision
from mgan.cli import resolve_device
from mgan.config import check_choices, from_dict
from mgan.errors import ConfigError, InputError
from mgan.optim import Level, RunStats, coarse_to_fine, optimize_image
from mgan.vgg import VGG19Encoder, check_feature_layer

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclass
class GatysConfig:
    """Options of Gram-matrix synthesis and transfer; defaults follow neural-style."""

    size: int = 384  # longest side of the output (transfer) or side (texture)
    style_size: int = 384  # longest side of the style image (at the finest level)
    content_layer: str = "relu4_2"
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)  # w_l (seed 000)
    content_weight: float = 5.0  # alpha (neural-style -content_weight)
    style_weight: float = 100.0  # beta (neural-style -style_weight)
    tv_weight: float = 1e-3  # gamma, on the 0-255 image (neural-style -tv_weight)
    pooling: Literal["max", "avg"] = "max"  # "max" (VGG as trained, neural-style default) or "avg" (Gatys et al.)
    init: Literal["content", "noise"] = "content"  # texture synthesis always starts from noise
    noise_std: float = 0.25  # noise init: 0.5 + noise_std * N(0, 1), in [0, 1] units
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    iterations: int = 500  # per level
    lr: float = 1.0  # L-BFGS step scale; Adam lr in 0-255 units (neural-style uses 10)
    history_size: int = 100  # L-BFGS memory
    levels: int = 1  # coarse-to-fine levels; level k runs at size / 2^(levels-1-k)
    preserve_colors: bool = False  # keep the photo's colours (YUV chrominance)
    seed: int = 0
    precision: str = "auto"  # VGG weights: "auto" (bf16 where native: mgan.precision), "fp32", "bf16"; losses in fp32
    vgg_weights: str = "caffe"

    def validate(self) -> None:
        """Raise ConfigError for impossible values."""
        check_choices(self)
        if self.size < 16:
            raise ConfigError(f"size: must be >= 16, got {self.size}")
        if self.style_size < 16:
            raise ConfigError(f"style_size: must be >= 16, got {self.style_size}")
        check_feature_layer(self.content_layer, "content_layer")
        for name in self.style_layers:
            check_feature_layer(name, "style_layers")
        if not self.style_layers:
            raise ConfigError("style_layers: need at least one layer")
        if len(self.style_layer_weights) != len(self.style_layers):
            raise ConfigError(
                f"style_layer_weights: {len(self.style_layer_weights)} weights for {len(self.style_layers)} layers"
            )
        for name in ("content_weight", "style_weight", "tv_weight", "noise_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if any(w < 0 for w in self.style_layer_weights):
            raise ConfigError("style_layer_weights: must be >= 0")
        if self.iterations < 0:
            raise ConfigError(f"iterations: must be >= 0, got {self.iterations}")
        if self.lr <= 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        if self.history_size < 1:
            raise ConfigError(f"history_size: must be >= 1, got {self.history_size}")
        if not 1 <= self.levels <= 5:
            raise ConfigError(f"levels: must be in 1..5, got {self.levels}")
        if self.size // 2 ** (self.levels - 1) < 16:
            raise ConfigError(f"levels: {self.levels} levels make the coarsest side < 16 px at size {self.size}")
        precision.check(self.precision)


# ---------------------------------------------------------------------------- colour


def rgb_to_yuv(x: Tensor) -> Tensor:
    """``[N, 3, H, W]`` RGB -> YUV (BT.601)."""
    m = x.new_tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])
    return torch.einsum("ij,njhw->nihw", m, x)


def yuv_to_rgb(x: Tensor) -> Tensor:
    """``[N, 3, H, W]`` YUV (BT.601) -> RGB."""
    m = x.new_tensor([[1.0, 0.0, 1.13983], [1.0, -0.39465, -0.58060], [1.0, 2.03211, 0.0]])
    return torch.einsum("ij,njhw->nihw", m, x)


def preserve_colors(result: Tensor, content: Tensor) -> Tensor:
    """Luminance of ``result``, chrominance of ``content`` (neural-style ``-original_colors 1``).

    Both ``[1, 3, H, W]`` in ``[0, 1]``; ``content`` is resized to ``result`` if needed.
    """
    if content.shape[-2:] != result.shape[-2:]:
        content = F.interpolate(content, size=result.shape[-2:], mode="bicubic", align_corners=False)
    y = rgb_to_yuv(result)
    c = rgb_to_yuv(content.to(result))
    return yuv_to_rgb(torch.cat([y[:, :1], c[:, 1:]], dim=1)).clamp(0, 1)


# ---------------------------------------------------------------------------- engine


def resolve_precision(config: GatysConfig, device: torch.device | str) -> tuple[str, str]:
    """The precision a Gatys run computes in, and why (:func:`mgan.precision.resolve_precision`).

    ``auto`` with L-BFGS is fp32 even where bf16 is native. L-BFGS builds its curvature
    model from differences of successive gradients, ``y = g_{k+1} - g_k``; near convergence
    those differences are small against ``g`` itself, and bf16's 8-bit mantissa (relative
    rounding ~4e-3 per VGG layer) swamps them, so the two-loop recursion can take huge
    steps. Measured: bf16 L-BFGS drove the image to non-finite pixels at its third step
    on The Starry Night and on imagenet100/test/..504 (256 px), where fp32 converged
    (docs/calibration.md). Adam only scales each gradient by its own running moments, so
    ``auto`` keeps bf16 for it; an explicit ``bf16`` is honoured either way.
    """
    if config.precision == "auto" and config.optimizer == "lbfgs":
        return "fp32", "auto: L-BFGS needs fp32 gradients; bf16 rounding breaks its curvature pairs"
    return precision.resolve_precision(config.precision, device)


class Gatys:
    """Gram-matrix synthesis against one style image.

    Args:
        style: ``[1, 3, H, W]`` RGB in ``[0, 1]`` (resized to ``config.style_size`` here).
        config: :class:`GatysConfig`.
        device: torch device.
        encoder: optional shared :class:`VGG19Encoder` holding the needed taps with the
            configured pooling.
    """

    def __init__(
        self,
        style: Tensor,
        config: GatysConfig,
        device: torch.device | str = "cpu",
        encoder: VGG19Encoder | None = None,
    ) -> None:
        config.validate()
        self.cfg = config
        self.device = torch.device(device)
        self.precision = resolve_precision(config, self.device)[0]
        taps = tuple(dict.fromkeys((*config.style_layers, config.content_layer)))
        if encoder is not None and not set(taps) <= set(encoder.layers):
            raise ValueError(f"the shared encoder lacks taps {sorted(set(taps) - set(encoder.layers))}")
        self.encoder = (encoder or VGG19Encoder(
            taps, weights=config.vgg_weights, pooling=config.pooling, precision=self.precision
        )).to(self.device)
        self.style = io.resize_longest(style, config.style_size).to(self.device)
        self._grams: dict[float, dict[str, Tensor]] = {}

    def style_grams(self, scale: float = 1.0) -> dict[str, Tensor]:
        """Gram targets ``{layer: [1, C, C]}`` of the style resized by ``scale`` (cached)."""
        if scale not in self._grams:
            style = self.style
            if scale != 1.0:
                style = io.resize_longest(style, max(16, round(max(style.shape[-2:]) * scale)))
            with torch.no_grad():
                feats = self.encoder(style, self.cfg.style_layers)
            self._grams[scale] = {k: losses.gram(v) for k, v in feats.items()}
        return self._grams[scale]

    def loss(self, v: Tensor, grams: dict[str, Tensor], content_target: Tensor | None) -> Tensor:
        """Total loss of the 0-255 image ``v`` ``[1, 3, H, W]`` (seed 002, Eq. 5)."""
        cfg = self.cfg
        layers = set(cfg.style_layers) | ({cfg.content_layer} if content_target is not None else set())
        feats = self.encoder(v / 255.0, layers)
        style = sum(w * losses.gram_loss(feats[name], grams[name])
                    for name, w in zip(cfg.style_layers, cfg.style_layer_weights, strict=True) if w > 0)
        total = cfg.style_weight * style
        if content_target is not None and cfg.content_weight > 0:
            total = total + cfg.content_weight * losses.content_loss(feats[cfg.content_layer], content_target)
        if cfg.tv_weight > 0:
            total = total + 0.5 * cfg.tv_weight * losses.tv_loss(v)
        return total

    def run(
        self,
        content: Tensor | None = None,
        size: tuple[int, int] | None = None,
        progress: bool = False,
        callback: Callable[[int, Tensor, float], None] | None = None,
    ) -> tuple[Tensor, RunStats]:
        """Optimise one image, coarse to fine.

        Args:
            content: ``[1, 3, H, W]`` photo in ``[0, 1]`` (style transfer; sets the output
                size), or None (texture synthesis from noise at ``size``).
            size: ``(H, W)`` of a texture (default ``config.size`` square).
            callback: ``callback(i, v, loss)`` per iteration, ``v`` in 0-255 units.
        Returns:
            ``([1, 3, H, W]`` in ``[0, 1]`` on CPU, :class:`RunStats`).
        """
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        if content is not None:
            content = content.to(self.device).float()
            full = (content.shape[-2], content.shape[-1])
        else:
            full = size or (cfg.size, cfg.size)
        stats = RunStats()
        t0 = time.perf_counter()

        def optimize(v: Tensor, level: Level) -> list[float]:
            target = None
            if level.content is not None and cfg.content_weight > 0:
                with torch.no_grad():
                    target = self.encoder(level.content, [cfg.content_layer])[cfg.content_layer].float()
            loss_fn = functools.partial(self.loss, grams=self.style_grams(level.scale), content_target=target)
            h, w = level.size
            return optimize_image(v, loss_fn, cfg.optimizer, cfg.iterations, cfg.lr, cfg.history_size, progress,
                                  f"gatys {w}x{h}", callback)

        x = coarse_to_fine(optimize, full, cfg.levels, content, cfg.init, cfg.noise_std, gen, self.device,
                           min_side=16, stats=stats)
        if cfg.preserve_colors and content is not None:
            x = preserve_colors(x, content)
        stats.seconds = time.perf_counter() - t0
        return x.float().cpu(), stats


def synthesize(
    style: Tensor, config: GatysConfig, size: tuple[int, int] | None = None, device: str | torch.device = "cpu",
    encoder: VGG19Encoder | None = None, progress: bool = False,
) -> tuple[Tensor, RunStats]:
    """Gram texture synthesis from noise (Gatys et al. 2015): ``style [1,3,H,W] -> [1,3,h,w]``."""
    return Gatys(style, config, device, encoder).run(None, size=size, progress=progress)


def transfer(
    content: Tensor, style: Tensor, config: GatysConfig, device: str | torch.device = "cpu",
    encoder: VGG19Encoder | None = None, progress: bool = False,
) -> tuple[Tensor, RunStats]:
    """Neural style transfer (Gatys et al. 2016): ``content [1,3,H,W]`` in the style -> ``[1,3,H,W]``."""
    return Gatys(style, config, device, encoder).run(content, progress=progress)


# ---------------------------------------------------------------------------- CLI


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _parser() -> argparse.ArgumentParser:
    d = GatysConfig()
    p = argparse.ArgumentParser(
        prog="python -m mgan.gatys",
        description="Gatys et al. Gram-matrix texture synthesis (no --content) and neural style transfer.",
        epilog="example: python -m mgan.gatys --style picasso.jpg --content tubingen.jpg --out out.png",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--style", type=Path, required=True, help="style / texture image")
    p.add_argument("--content", type=Path, help="photo to stylise (omit for texture synthesis)")
    p.add_argument("--out", type=Path, default=Path("gatys_out.png"), help="output image")
    p.add_argument("--size", type=int, default=d.size, help="longest side (transfer) or side (texture)")
    p.add_argument("--height", type=int, default=None, help="texture height (default: --size)")
    p.add_argument("--style-size", type=int, default=d.style_size)
    p.add_argument("--content-layer", default=d.content_layer)
    p.add_argument("--style-layers", type=_names, default=d.style_layers, help="comma-separated")
    p.add_argument("--style-layer-weights", type=_floats, default=None, help="comma-separated (default: all 1)")
    p.add_argument("--content-weight", type=float, default=d.content_weight)
    p.add_argument("--style-weight", type=float, default=d.style_weight)
    p.add_argument("--tv-weight", type=float, default=d.tv_weight)
    p.add_argument("--pooling", choices=("max", "avg"), default=d.pooling)
    p.add_argument("--init", choices=("content", "noise"), default=d.init)
    p.add_argument("--noise-std", type=float, default=d.noise_std)
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default=d.optimizer)
    p.add_argument("--iterations", type=int, default=d.iterations, help="per level")
    p.add_argument("--lr", type=float, default=None, help="default: 1 (L-BFGS) or 10 (Adam, 0-255 units)")
    p.add_argument("--levels", type=int, default=d.levels, help="coarse-to-fine levels (each x2)")
    p.add_argument("--preserve-colors", action="store_true", help="keep the photo's colours")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=precision.CHOICES, default=d.precision, help=precision.HELP)
    p.add_argument("--vgg-weights", default=d.vgg_weights)
    p.add_argument("--max-pixels", type=int, default=None, help="raise the decompression-bomb limit")
    return p


def config_from_args(args: argparse.Namespace) -> GatysConfig:
    """Build and validate a :class:`GatysConfig` from parsed CLI arguments."""
    names = {f.name for f in dataclasses.fields(GatysConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    values["style_layers"] = list(args.style_layers)
    if args.style_layer_weights is None:
        values["style_layer_weights"] = [1.0] * len(args.style_layers)
    else:
        values["style_layer_weights"] = list(args.style_layer_weights)
    if args.lr is None:
        values["lr"] = 1.0 if args.optimizer == "lbfgs" else 10.0
    return from_dict(GatysConfig, values)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 ok, 1 failed, 2 bad input, 130 interrupted (mgan.cli.run)."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _run(args), args=args, interrupted="interrupted")


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    io.set_max_pixels(args.max_pixels)
    device = resolve_device(args.device)
    io.check_output_image(args.out)
    io.check_outputs([("--out", args.out)], [(o, p) for o, p in (("--style", args.style), ("--content", args.content))
                                             if p is not None])
    style = io.load_image(args.style, min_side=16)
    content = io.load_image(args.content, max_side=cfg.size, min_side=16) if args.content else None
    engine = Gatys(style, cfg, device)
    h = args.height or cfg.size
    if h < 16:
        raise InputError(f"--height must be >= 16, got {h}")
    print("precision: {} ({})".format(*resolve_precision(cfg, device)), file=sys.stderr)  # after the input checks
    img, stats = engine.run(content, size=(h, cfg.size), progress=True)
    io.save_image(img, args.out)
    print(f"wrote {args.out} ({img.shape[-1]}x{img.shape[-2]}, {stats.iterations} iterations, "
          f"{stats.seconds:.1f} s, loss {stats.loss[-1] if stats.loss else float('nan'):.4g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
