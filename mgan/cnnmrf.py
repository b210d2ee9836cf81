"""CNNMRF: Markov random fields on VGG features (Li & Wand, CVPR 2016; the MGAN paper's [21]).

The image ``x`` minimises

    E(x) = sum_l w_l E_mrf(Phi_l(x), Phi_l(x_s)) + alpha E_c(Phi(x), Phi(x_c)) + gamma TV(x)

where ``E_mrf`` (:func:`mgan.losses.mrf_loss`) pulls every 3x3 neural patch of
relu3_1 and relu4_1 towards its nearest style patch, the match chosen by normalised
cross-correlation (a convolution with the normalised style patches as filters,
computed in chunks). The style patches come from rotated and scaled copies of the
style image (the "style pool"). Optimisation is L-BFGS on a 3-level pyramid, each
level starting from the previous result upsampled. The MGAN paper (Sec. 5, Fig. 11)
uses CNNMRF as the most coherent but slowest baseline (110 s for 384x384 on a Titan X).

Defaults are the reference runs of CNNMRF's ``run_trans.lua``: MRF weights 1e-4 on
relu3_1 and relu4_1, content weight 2e1 on relu4_2 (MSE), TV 1e-3 (on the 0-255
image), synthesis and style-sampling stride 2, rotations +-pi/24, scales
1.05^{-1,0,1}, 3 levels x 100 L-BFGS iterations with 25 corrections. The Caffe preprocessing is the same as CNNMRF's,
so its weights apply unchanged.

CLI::

    python -m mgan.cnnmrf --style picasso.jpg --content tubingen.jpg --out out.png
    python -m mgan.cnnmrf --style pebbles.jpg --size 256 --out texture.png     # texture synthesis
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from mgan import cli, io, losses, patches, precision
from mgan.cli import resolve_device
from mgan.config import check_choices, from_dict
from mgan.data import augment, augmentations
from mgan.errors import ConfigError, InputError
from mgan.optim import Level, RunStats, coarse_to_fine, optimize_image
from mgan.vgg import VGG19Encoder, check_feature_layer, layer_scale


@dataclass
class CNNMRFConfig:
    """Options of CNNMRF synthesis; defaults follow the original ``transfer_CNNMRF_wrapper.lua``."""

    size: int = 384  # longest side of the output (transfer) or side (texture), at the finest level
    style_size: int = 384  # longest side of the style image at the finest level
    levels: int = 3  # pyramid levels (num_res)
    iterations: int = 100  # L-BFGS iterations per level
    mrf_layers: tuple[str, ...] = ("relu3_1", "relu4_1")
    mrf_weights: tuple[float, ...] = (1e-4, 1e-4)
    patch_size: int = 3
    synthesis_stride: int = 2  # grid stride of the synthesised patches
    style_stride: int = 2  # sampling stride of the style patches
    angles: tuple[float, ...] = (-7.5, 0.0, 7.5)  # style pool rotations in degrees (pi/24)
    scales: tuple[float, ...] = (1 / 1.05, 1.0, 1.05)  # style pool scales
    content_layer: str = "relu4_2"  # run_trans.lua passes layer 23 (relu4_2); the wrapper's fallback is relu4_1
    content_weight: float = 20.0  # alpha on the content MSE
    tv_weight: float = 1e-3  # gamma, on the 0-255 image
    init: Literal["content", "noise"] = "content"  # texture synthesis always starts from noise
    noise_std: float = 0.25
    lr: float = 1.0  # L-BFGS step scale
    history_size: int = 25  # L-BFGS memory (nCorrection)
    chunk: int = 4096  # style patches per matching GEMM
    blend: bool = True  # average the gradients of overlapping patches
    seed: int = 0
    precision: str = "auto"  # VGG weights and the matching GEMMs ("auto": bf16 where native); losses in fp32
    vgg_weights: str = "caffe"

    def validate(self) -> None:
        """Raise ConfigError for impossible values."""
        check_choices(self)
        if self.size < 32 or self.style_size < 32:
            raise ConfigError(f"size and style_size must be >= 32, got {self.size}, {self.style_size}")
        if not 1 <= self.levels <= 5:
            raise ConfigError(f"levels: must be in 1..5, got {self.levels}")
        if self.iterations < 0:
            raise ConfigError(f"iterations: must be >= 0, got {self.iterations}")
        if not self.mrf_layers or len(self.mrf_weights) != len(self.mrf_layers):
            raise ConfigError(f"mrf_weights: {len(self.mrf_weights)} weights for {len(self.mrf_layers)} mrf_layers")
        for name in self.mrf_layers:
            check_feature_layer(name, "mrf_layers")
        check_feature_layer(self.content_layer, "content_layer")
        if self.patch_size < 1 or self.synthesis_stride < 1 or self.style_stride < 1 or self.chunk < 1:
            raise ConfigError("patch_size, synthesis_stride, style_stride and chunk must be >= 1")
        for name in ("content_weight", "tv_weight", "noise_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if any(w < 0 for w in self.mrf_weights):
            raise ConfigError("mrf_weights: must be >= 0")
        if not self.angles or not self.scales or any(s <= 0 for s in self.scales):
            raise ConfigError("angles and scales must be non-empty, scales > 0")
        if self.lr <= 0 or self.history_size < 1:
            raise ConfigError("lr must be > 0 and history_size >= 1")
        precision.check(self.precision)
        if self.coarsest(self.size) < self.min_side:
            raise ConfigError(
                f"levels: the coarsest level ({self.coarsest(self.size)} px) is below {self.min_side} px, "
                f"too small for {self.patch_size}x{self.patch_size} patches on {max(self.mrf_layers, key=layer_scale)}"
            )

    @property
    def min_side(self) -> int:
        """Smallest image side whose deepest MRF map still holds one patch."""
        return self.patch_size * max(layer_scale(n) for n in self.mrf_layers)

    def coarsest(self, side: int) -> int:
        """Side of the coarsest pyramid level for a finest side ``side``."""
        return side // 2 ** (self.levels - 1)


class CNNMRF:
    """MRF synthesis against one style image, with a per-level style patch pool.

    Args:
        style: ``[1, 3, H, W]`` RGB in ``[0, 1]`` (resized to ``config.style_size`` here).
        config: :class:`CNNMRFConfig`.
        device: torch device.
        encoder: optional shared :class:`VGG19Encoder` with the MRF and content taps.
    """

    def __init__(
        self, style: Tensor, config: CNNMRFConfig, device: torch.device | str = "cpu",
        encoder: VGG19Encoder | None = None,
    ) -> None:
        config.validate()
        self.cfg = config
        self.device = torch.device(device)
        self.precision = precision.resolve(config.precision, self.device)
        taps = tuple(dict.fromkeys((*config.mrf_layers, config.content_layer)))
        if encoder is not None and not set(taps) <= set(encoder.layers):
            raise ValueError(f"the shared encoder lacks taps {sorted(set(taps) - set(encoder.layers))}")
        self.encoder = (encoder or VGG19Encoder(taps, weights=config.vgg_weights, precision=self.precision)).to(
            self.device
        )
        self.style = io.resize_longest(style, config.style_size).to(self.device)
        if min(self.style.shape[-2:]) < config.min_side:
            raise InputError(f"style image too small: each side must be >= {config.min_side} px")
        self._pools: dict[float, dict[str, tuple[Tensor, Tensor]]] = {}

    @torch.no_grad()
    def style_pool(self, scale: float = 1.0) -> dict[str, tuple[Tensor, Tensor]]:
        """``{layer: (raw [S, C, p, p], normalised [S, C*p*p])}`` from the augmented style at ``scale``."""
        if scale in self._pools:
            return self._pools[scale]
        cfg = self.cfg
        style = self.style
        if scale != 1.0:
            style = io.resize_longest(style, max(cfg.min_side, round(max(style.shape[-2:]) * scale)))
        raw: dict[str, list[Tensor]] = {name: [] for name in cfg.mrf_layers}
        for angle, s, flip in augmentations(cfg.angles, cfg.scales, flip=False):
            feats = self.encoder(augment(style, angle, s, flip), cfg.mrf_layers)
            for name in cfg.mrf_layers:
                f = feats[name]
                if min(f.shape[-2:]) >= cfg.patch_size:
                    raw[name].append(patches.extract_patches(f, cfg.patch_size, cfg.style_stride))
        pool = {}
        for name, parts in raw.items():
            if not parts:
                raise InputError(f"style image too small for {cfg.patch_size}x{cfg.patch_size} patches on {name}")
            p = torch.cat(parts)
            pool[name] = (p, patches.normalize_patches(p).to(p.dtype))
        self._pools[scale] = pool
        return pool

    def loss(self, v: Tensor, pool: dict[str, tuple[Tensor, Tensor]], content_target: Tensor | None) -> Tensor:
        """Total energy of the 0-255 image ``v`` ``[1, 3, H, W]``."""
        cfg = self.cfg
        layers = set(cfg.mrf_layers) | ({cfg.content_layer} if content_target is not None else set())
        feats = self.encoder(v / 255.0, layers)
        total = v.new_zeros(())
        for name, w in zip(cfg.mrf_layers, cfg.mrf_weights, strict=True):
            if w > 0:
                raw, filters = pool[name]
                total = total + w * losses.mrf_loss(
                    feats[name], filters, raw, cfg.patch_size, cfg.synthesis_stride, cfg.chunk, cfg.blend
                )
        if content_target is not None and cfg.content_weight > 0:
            total = total + cfg.content_weight * losses.content_loss(feats[cfg.content_layer], content_target)
        if cfg.tv_weight > 0:
            total = total + 0.5 * cfg.tv_weight * losses.tv_loss(v)
        return total

    def run(
        self, content: Tensor | None = None, size: tuple[int, int] | None = None, progress: bool = False
    ) -> tuple[Tensor, RunStats]:
        """Synthesise one image over the pyramid.

        Args:
            content: ``[1, 3, H, W]`` photo in ``[0, 1]`` (transfer), or None (texture from noise).
            size: ``(H, W)`` of a texture (default ``config.size`` square).
        Returns:
            ``([1, 3, H, W]`` in ``[0, 1]`` on CPU, :class:`RunStats`).
        """
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        full = (content.shape[-2], content.shape[-1]) if content is not None else (size or (cfg.size, cfg.size))
        if cfg.coarsest(min(full)) < cfg.min_side:
            raise InputError(
                f"image {full[1]}x{full[0]} is too small for {cfg.levels} levels: the coarsest level needs "
                f"sides >= {cfg.min_side} px; use fewer --levels or a larger image"
            )
        if content is not None:
            content = content.to(self.device).float()
        stats = RunStats()
        t0 = time.perf_counter()

        def optimize(v: Tensor, level: Level) -> list[float]:
            target = None
            if level.content is not None and cfg.content_weight > 0:
                with torch.no_grad():
                    target = self.encoder(level.content, [cfg.content_layer])[cfg.content_layer].float()
            loss_fn = functools.partial(self.loss, pool=self.style_pool(level.scale), content_target=target)
            h, w = level.size
            return optimize_image(v, loss_fn, "lbfgs", cfg.iterations, cfg.lr, cfg.history_size, progress,
                                  f"cnnmrf {w}x{h}")

        x = coarse_to_fine(optimize, full, cfg.levels, content, cfg.init, cfg.noise_std, gen, self.device, stats=stats)
        stats.seconds = time.perf_counter() - t0
        return x.float().cpu(), stats


def transfer(
    content: Tensor, style: Tensor, config: CNNMRFConfig, device: str | torch.device = "cpu",
    encoder: VGG19Encoder | None = None, progress: bool = False,
) -> tuple[Tensor, RunStats]:
    """CNNMRF style transfer: ``content [1,3,H,W]`` rendered with the style's neural patches."""
    return CNNMRF(style, config, device, encoder).run(content, progress=progress)


def synthesize(
    style: Tensor, config: CNNMRFConfig, size: tuple[int, int] | None = None, device: str | torch.device = "cpu",
    encoder: VGG19Encoder | None = None, progress: bool = False,
) -> tuple[Tensor, RunStats]:
    """CNNMRF texture synthesis from noise: ``style -> [1, 3, H, W]``."""
    return CNNMRF(style, config, device, encoder).run(None, size=size, progress=progress)


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    d = CNNMRFConfig()
    p = argparse.ArgumentParser(
        prog="python -m mgan.cnnmrf",
        description="CNNMRF (Li & Wand 2016): MRF loss on VGG neural patches matched by normalised "
        "cross-correlation, content loss, TV, a coarse-to-fine pyramid, L-BFGS.",
        epilog="example: python -m mgan.cnnmrf --style picasso.jpg --content tubingen.jpg --out out.png",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--style", type=Path, required=True, help="style / texture image")
    p.add_argument("--content", type=Path, help="photo to stylise (omit for texture synthesis)")
    p.add_argument("--out", type=Path, default=Path("cnnmrf_out.png"), help="output image")
    p.add_argument("--size", type=int, default=d.size, help="longest side (transfer) or side (texture)")
    p.add_argument("--height", type=int, default=None, help="texture height (default: --size)")
    p.add_argument("--style-size", type=int, default=d.style_size)
    p.add_argument("--levels", type=int, default=d.levels)
    p.add_argument("--iterations", type=int, default=d.iterations, help="L-BFGS iterations per level")
    p.add_argument("--mrf-weight", type=float, default=d.mrf_weights[0], help="weight of each MRF layer")
    p.add_argument("--content-weight", type=float, default=d.content_weight)
    p.add_argument("--tv-weight", type=float, default=d.tv_weight)
    p.add_argument("--synthesis-stride", type=int, default=d.synthesis_stride)
    p.add_argument("--style-stride", type=int, default=d.style_stride)
    p.add_argument("--init", choices=("content", "noise"), default=d.init)
    p.add_argument("--no-blend", action="store_true", help="sum, not average, overlapping patch gradients")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=precision.CHOICES, default=d.precision, help=precision.HELP)
    p.add_argument("--vgg-weights", default=d.vgg_weights)
    p.add_argument("--max-pixels", type=int, default=None, help="raise the decompression-bomb limit")
    return p


def config_from_args(args: argparse.Namespace) -> CNNMRFConfig:
    """Build and validate a :class:`CNNMRFConfig` from parsed CLI arguments."""
    names = {f.name for f in dataclasses.fields(CNNMRFConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    values["mrf_weights"] = [args.mrf_weight] * len(CNNMRFConfig().mrf_layers)
    values["blend"] = not args.no_blend
    return from_dict(CNNMRFConfig, values)


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
    style = io.load_image(args.style, min_side=cfg.min_side)
    content = None
    if args.content is not None:
        content = io.load_image(args.content, max_side=cfg.size, min_side=cfg.min_side)
    h = args.height or cfg.size
    engine = CNNMRF(style, cfg, device)
    precision.announce(cfg.precision, device)  # after the input checks: a bad input gets one error line
    img, stats = engine.run(content, size=(h, cfg.size), progress=True)
    io.save_image(img, args.out)
    print(f"wrote {args.out} ({img.shape[-1]}x{img.shape[-2]}, {stats.iterations} iterations, "
          f"{stats.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
