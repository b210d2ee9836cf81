"""Feed-forward perceptual networks (Johnson, Alahi & Fei-Fei, ECCV 2016; seed 002).

An image transformation network ``y = f_W(x)`` is trained so that a frozen VGG
("loss network") judges its output:

    W* = argmin_W E_x [ lambda_c l_feat(f_W(x), y_c) + lambda_s l_style(f_W(x), y_s) + lambda_TV TV(f_W(x)) ]  (Eq. 6, 10)

with the feature reconstruction loss ``l_feat`` (Eq. 7, a mean squared error) and
the Gram style loss ``l_style`` (Eqs. 8-9, Gram matrices normalised by ``C H W``).
After training, stylising a photo is one forward pass: the feed-forward speed that
MGAN (paper Sec. 5) shares with this method and Texture Networks.

Two tasks share the machinery:

* ``style``: input and target are the same photo; content on relu3_3, style on
  relu1_2, relu2_2, relu3_3, relu4_3 (VGG-16 names, which VGG-19 also has). Network:
  c9s1-32, d64, d128, 5 residual blocks, u64, u32, c9s1-3 with instance norm and
  nearest-upsample + conv (as pytorch/examples, which avoids checkerboards).
* ``sr``: single-image super-resolution by ``upscale`` (2, 4 or 8): the input is the
  blurred, bicubically downsampled crop (:func:`degrade`). Network: c9s1-64, 4 residual
  blocks, log2(upscale) upsampling convs, c9s1-3. Two losses, Johnson et al.'s comparison
  (Sec. 4.2): ``loss: perceptual`` (default), the relu2_2 feature reconstruction loss
  ``l_feat`` plus TV; ``loss: mse``, the per-pixel loss ``l_pixel = ||f_W(x) - y||^2 / (C H W)``
  (Sec. 3.3) to the high-resolution crop. ``mgan.sr_eval`` scores both against bicubic
  upsampling (PSNR and SSIM on Y, relu2_2 distance).

  **Bicubic skip** (``sr_skip``, on for new sr runs): the network predicts a residual that
  is added to the bicubic upsampling of its input, ``y = bicubic(x) + f_W(x)``, with the
  residual's last conv initialised to zero, so training starts from bicubic (Kim et al.,
  VDSR, CVPR 2016), not Johnson et al.'s plain ``y = f_W(x)``. Measured (2-core AMD EPYC
  AVX-512-bf16, 1000 steps of 4 crops of 192 px, ../shared/data/photo and imagenet100/test at
  512 px, x4): without it, the instance-normalised network cannot carry the photo's absolute
  colour and brightness through, and both losses end far below bicubic (PSNR 20.2 dB mse,
  19.9 perceptual, against 27.9), with desaturated skies and halos; 200k iterations (the
  paper's) are out of a CPU's reach.

  The pixel loss is taken on images in ``[0, 1]``, the units of every image in this
  package, so the logged ``pixel`` term (``content_weight`` 1) is ``10^(-PSNR/10)`` of
  the batch's RGB PSNR (1e-3 is 30 dB). Adam's steps do not depend on the loss's scale,
  so 0-255 units would change only the balance with TV; for that reason the mse run has
  no TV term by default (``tv_weight`` 0): the 1e-6 TV sum on the 0-255 output is ~90 on
  a 288 px photo crop, four to five orders of magnitude above the pixel loss (2e-3 for
  bicubic x4 there), and would turn the PSNR-optimal baseline into a blur. The pixel
  loss needs no loss network, so the mse run builds no VGG.

Weights follow fast-neural-style (whose Caffe VGG input scale we share): style 5 on
relu1_2/2_2/3_3/4_3, TV 1e-6 on the 0-255 output, Adam lr 1e-3, batch 4, 256x256 crops;
the original trains 40k iterations on COCO (200k for sr), far beyond this CPU, so the CLI
takes ``--steps``.

**Content weight** (style task): 20 on relu3_3, not fast-neural-style's 1. Measured (2-core
AMD EPYC AVX-512-bf16, Picasso self-portrait, the 253 training photos): with content 1 the
network drew the style's texture alone, the photo gone by step 750; its content loss never
fell in 1,275 steps while the style loss fell 25x. A likely reason, not isolated: our loss
network is VGG-19, not fast-neural-style's VGG-16, whose relu3_3/relu4_3 differ. At step 300,
``mgan.evaluate`` on three photos at 256 px (photo SWD 0.542): content 20 gave SWD 0.449
at content distance 0.543, content 50 gave 0.465 at 0.413; both keep the photo, 20 moves
it further toward the style, at Gatys's content distance (0.61) or less.

CLI::

    python -m mgan.perceptual train --style picasso.jpg --data photos/ --steps 2000
    python -m mgan.perceptual stylize --checkpoint runs/00000-perceptual-picasso/final.pt \\
        --content tubingen.jpg --out out.png
    python -m mgan.perceptual train --task sr --upscale 4 --data photos/ --steps 2000              # -> perceptual-sr4
    python -m mgan.perceptual train --task sr --upscale 4 --loss mse --data photos/ --steps 2000   # -> perceptual-sr4-mse
    python -m mgan.sr_eval --photos set5/ --scale 4 --out sr_eval/ \\
        --net perceptual=runs/00001-perceptual-sr4/final.pt --net mse=runs/00002-perceptual-sr4-mse/final.pt
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgan import cli, io, losses, runs
from mgan import precision as prec  # `precision` is a parameter name of apply()
from mgan.cli import resolve_device
from mgan.config import apply_overrides, check_choices, dump_yaml, from_dict, to_dict
from mgan.data import PhotoCrops
from mgan.errors import ConfigError, InputError, one_line
from mgan.vgg import VGG19Encoder, check_feature_layer

CHECKPOINT_FORMAT = "mgan-perceptual-v1"


@dataclass
class PerceptualConfig:
    """Options of a feed-forward perceptual network and its training."""

    task: Literal["style", "sr"] = "style"  # "style" (stylisation) or "sr" (super-resolution)
    upscale: int = 4  # sr only: 2, 4 or 8
    # sr only: "perceptual" (relu2_2 feature loss, Eq. 7) or "mse" (per-pixel loss on [0, 1] images, Sec. 3.3)
    loss: Literal["perceptual", "mse"] = "perceptual"
    image_size: int = 256  # training crop side (the high-resolution side for sr)
    load_size: int = 0  # photos are resized to this shorter side before cropping (0: image_size)
    style_size: int = 256  # longest side of the style image (fast-neural-style's style_image_size)
    batch_size: int = 4
    steps: int = 40000  # Johnson et al.: 40k iterations on COCO
    lr: float = 1e-3
    content_layer: str = "relu3_3"  # sr: relu2_2
    style_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    # of the reconstruction term: the feature loss, or the pixel loss for loss mse (sr: 1).
    # style: 20, not fast-neural-style's 1, measured (module docstring "Content weight")
    content_weight: float = 20.0
    style_weight: float = 5.0
    tv_weight: float = 1e-6  # on the 0-255 output (sr with loss mse: 0 by default, see the module docstring)
    base_channels: int = 32  # sr: 64
    residual_blocks: int = 5  # sr: 4
    # sr only: predict a residual over the bicubic upsampling of the input (new runs: True;
    # False, Johnson et al.'s plain network, is what older checkpoints hold): module docstring
    sr_skip: bool = False
    seed: int = 0
    precision: str = "auto"  # "bf16": bf16 VGG weights and autocast for f_W; "fp32"; "auto": bf16 where native
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    max_seconds: float = 0.0  # stop early (and save) after this much training time; 0: no limit

    def validate(self) -> None:
        """Raise ConfigError for impossible values."""
        check_choices(self)
        if self.task == "sr" and self.upscale not in (2, 4, 8):
            raise ConfigError(f"upscale: must be 2, 4 or 8, got {self.upscale}")
        if self.task == "style" and self.sr_skip:
            raise ConfigError("sr_skip: is for task sr only")
        if self.task == "style" and self.loss != "perceptual":
            # The style task's content target is its own input photo: a per-pixel loss to it
            # (with no style term to pull away) is minimised by the identity.
            raise ConfigError(f"loss: {self.loss!r} is for task sr only; task style uses the perceptual loss")
        if self.image_size < 16 or self.image_size % (self.upscale if self.task == "sr" else 4):
            raise ConfigError(f"image_size: must be >= 16 and a multiple of {self.upscale if self.task == 'sr' else 4}")
        if self.style_size < 16:
            raise ConfigError(f"style_size: must be >= 16, got {self.style_size}")
        if self.load_size and self.load_size < self.image_size:
            raise ConfigError(f"load_size: must be 0 or >= image_size ({self.image_size}), got {self.load_size}")
        if self.max_seconds < 0:
            raise ConfigError(f"max_seconds: must be >= 0, got {self.max_seconds}")
        if self.batch_size < 1 or self.steps < 0 or self.lr <= 0:
            raise ConfigError("batch_size must be >= 1, steps >= 0, lr > 0")
        check_feature_layer(self.content_layer, "content_layer")
        for name in self.style_layers:
            check_feature_layer(name, "style_layers")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.base_channels < 1 or self.residual_blocks < 0:
            raise ConfigError("base_channels must be >= 1 and residual_blocks >= 0")
        prec.check(self.precision)
        for name in ("log_every", "sample_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")

    @classmethod
    def for_task(cls, task: str, **overrides: object) -> PerceptualConfig:
        """Defaults of a task (``sr`` switches layers and network; ``loss`` mse drops TV) with overrides."""
        base: dict = {"task": task}
        if task == "sr":
            base.update(content_layer="relu2_2", content_weight=1.0, style_weight=0.0, base_channels=64, residual_blocks=4,
                        image_size=288, style_layers=(), sr_skip=True)
            if overrides.get("loss") == "mse":  # the plain per-pixel baseline (module docstring)
                base["tv_weight"] = 0.0
        base.update(overrides)
        return from_dict(cls, base)


# ---------------------------------------------------------------------------- network


class ConvLayer(nn.Sequential):
    """Reflection-padded conv, optionally preceded by nearest upsampling (``u`` layers)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: int = 1) -> None:
        layers: list[nn.Module] = []
        if upsample > 1:
            layers.append(nn.Upsample(scale_factor=upsample, mode="nearest"))
        layers += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """``x + IN(conv(ReLU(IN(conv(x)))))`` (Johnson et al., supplementary Fig. 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True), nn.ReLU(inplace=True),
            ConvLayer(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return x + self.body(x)


class TransformNet(nn.Module):
    """Image transformation network ``f_W`` (Johnson et al. Sec. 3.1).

    ``c9s1-B, (d2B, d4B)[:down], R x residual_blocks, (u..)[:up], c9s1-3`` with instance
    norm and ReLU after every conv but the last. ``down`` stride-2 convs double the
    width; ``up`` upsample+conv layers halve it (never below ``B``).

    Forward: ``[N, 3, H, W]`` in ``[0, 1]`` -> ``[N, 3, H * 2^(up-down), W * 2^(up-down)]``,
    roughly in ``[0, 1]`` (not clamped, so the loss sees the true output).
    """

    def __init__(self, base: int = 32, down: int = 2, residual_blocks: int = 5, up: int = 2,
                 skip: bool = False) -> None:
        super().__init__()
        self.down, self.up, self.skip = down, up, skip
        layers: list[nn.Module] = [ConvLayer(3, base, 9), nn.InstanceNorm2d(base, affine=True), nn.ReLU(inplace=True)]
        c = base
        for _ in range(down):
            layers += [ConvLayer(c, 2 * c, 3, 2), nn.InstanceNorm2d(2 * c, affine=True), nn.ReLU(inplace=True)]
            c *= 2
        layers += [ResidualBlock(c) for _ in range(residual_blocks)]
        for _ in range(up):
            cout = max(base, c // 2)
            layers += [ConvLayer(c, cout, 3, upsample=2), nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True)]
            c = cout
        head = ConvLayer(c, 3, 9)
        self.net = nn.Sequential(*layers, head)
        if skip:  # start as plain bicubic upsampling: the residual branch's last conv is zero
            conv = head[-1]
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None  # ConvLayer: a biased conv last
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    @property
    def scale(self) -> float:
        """Output side / input side."""
        return 2.0 ** (self.up - self.down)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (stride-2 convs)."""
        return 2 ** self.down

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        y = self.net(x)
        if self.skip:  # y = bicubic(x) + f(x), the bicubic in fp32 even under autocast
            up = F.interpolate(x.float(), size=y.shape[-2:], mode="bicubic", align_corners=False)
            y = up + y.float()
        return y


def build_network(cfg: PerceptualConfig) -> TransformNet:
    """The task's network: style (down 2, up 2) or sr (down 0, up log2(upscale))."""
    if cfg.task == "sr":
        return TransformNet(cfg.base_channels, 0, cfg.residual_blocks, int(math.log2(cfg.upscale)), skip=cfg.sr_skip)
    return TransformNet(cfg.base_channels, 2, cfg.residual_blocks, 2)


# ---------------------------------------------------------------------------- data


def degrade(hr: Tensor, factor: int, sigma: float = 1.0) -> Tensor:
    """SR input: Gaussian blur (sigma 1, as Johnson et al.) then bicubic downsampling by ``factor``.

    ``[N, 3, H, W]`` -> ``[N, 3, H / factor, W / factor]`` in ``[0, 1]``.
    """
    x = io.gaussian_blur(hr.float(), sigma, radius=2)  # 5 taps, as Johnson et al.'s
    h, w = hr.shape[-2] // factor, hr.shape[-1] // factor
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


# ---------------------------------------------------------------------------- training


class PerceptualLoss(nn.Module):
    """``lambda_c l_feat + lambda_s l_style + lambda_TV TV`` on a frozen VGG (Eqs. 7-10).

    With ``cfg.loss == "mse"`` (task sr) the reconstruction term is the per-pixel loss
    ``lambda_c ||out - target||^2 / (C H W)`` on ``[0, 1]`` images instead, and no VGG is built.

    Args:
        cfg: weights and layers.
        style: ``[1, 3, H, W]`` style image (None for sr).
        encoder: optional shared VGG with the needed taps (unused for loss mse).
    """

    def __init__(self, cfg: PerceptualConfig, style: Tensor | None, device: torch.device,
                 encoder: VGG19Encoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.grams: dict[str, Tensor] = {}
        self.encoder: VGG19Encoder | None = None
        if cfg.loss == "mse":  # the pixel loss needs no loss network (and sr has no style term)
            return
        taps = tuple(dict.fromkeys((cfg.content_layer, *cfg.style_layers)))
        self.encoder = (encoder or VGG19Encoder(taps, precision=prec.resolve(cfg.precision, device))).to(device)
        if style is not None and cfg.style_weight > 0 and cfg.style_layers:
            with torch.no_grad():
                feats = self.encoder(io.resize_longest(style, cfg.style_size).to(device), cfg.style_layers)
            self.grams = {k: losses.gram(v) for k, v in feats.items()}

    def forward(self, out: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Loss terms (``content``, ``style``, ``tv``; ``pixel`` and ``tv`` for loss mse) for outputs
        ``[N, 3, H, W]`` against content targets (same shape)."""
        cfg = self.cfg
        if self.encoder is None:  # loss mse: l_pixel on [0, 1] images
            terms = {"pixel": cfg.content_weight * F.mse_loss(out.float(), target.float())}
        else:
            with torch.no_grad():
                tgt = self.encoder(target, [cfg.content_layer])[cfg.content_layer].float()
            layers = {cfg.content_layer} | set(self.grams)
            feats = self.encoder(out, layers)
            terms = {"content": cfg.content_weight * losses.content_loss(feats[cfg.content_layer], tgt)}
            if self.grams:  # non-empty, so sum() adds Tensors, never returning its int start 0
                style = cast(Tensor, sum(losses.gram_loss(feats[k], g) for k, g in self.grams.items()))
                terms["style"] = cfg.style_weight * style
        if cfg.tv_weight > 0:
            terms["tv"] = cfg.tv_weight * losses.tv_loss(out.float() * 255.0) / out.shape[0]
        return terms


def save_model(net: TransformNet, cfg: PerceptualConfig, path: Path, extra: dict | None = None) -> Path:
    """Write a checkpoint dict (format tag, config, weights, plus ``extra``) atomically."""
    return io.save_checkpoint({"format": CHECKPOINT_FORMAT, "config": to_dict(cfg),
                               "net": net.state_dict(), **(extra or {})}, path)


# released networks in mgan/assets/, by name (docs/baselines.md): x4 super-resolution and two styles
BUNDLED = {"sr4": "perceptual_sr4.pt", "picasso": "perceptual_picasso.pt", "starry_night": "perceptual_starry_night.pt"}


def resolve_checkpoint(path: str | Path) -> Path:
    """A bundled network's name (``sr4``) -> its file in ``mgan/assets/``; any other text is a path."""
    from mgan.assets import asset_path  # noqa: PLC0415

    name = str(path)
    if name in BUNDLED and not Path(name).exists():
        return asset_path(BUNDLED[name])
    return Path(path)


def load_model(path: str | Path) -> tuple[TransformNet, PerceptualConfig]:
    """Load a trained network (``final.pt``, ``checkpoint.pt`` or a bundled name such as ``sr4``);
    InputError if it is not one."""
    path = resolve_checkpoint(path)
    ckpt = io.load_checkpoint(path)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a perceptual-network checkpoint (format {ckpt.get('format')!r})")
    try:
        cfg = from_dict(PerceptualConfig, ckpt["config"])
        net = build_network(cfg)
        net.load_state_dict(ckpt["net"])
    except (KeyError, RuntimeError, ConfigError) as exc:
        raise InputError(f"{path}: checkpoint does not fit its config ({one_line(exc)[:160]})") from None
    return net.eval(), cfg


def train(
    cfg: PerceptualConfig,
    files: list[Path],
    style: Tensor | None,
    run_dir: Path | None = None,
    device: torch.device | str = "cpu",
    resume: dict | None = None,
    progress: bool = False,
    encoder: VGG19Encoder | None = None,
) -> tuple[TransformNet, list[dict]]:
    """Train ``f_W`` on random crops of ``files``; returns the network and the logged metrics.

    Writes ``metrics.jsonl``, sample grids, ``checkpoint.pt`` (every ``checkpoint_every``
    steps, resumable) and ``final.pt`` into ``run_dir`` when given.

    Args:
        style: ``[1, 3, H, W]`` style image (task ``style``) or None (task ``sr``).
        resume: a checkpoint dict from ``checkpoint.pt`` to continue from (step, weights,
            optimiser and RNG state).
        encoder: optional shared VGG holding the loss taps.
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = build_network(cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    start = 0
    if resume is not None:
        net.load_state_dict(resume["net"])
        opt.load_state_dict(resume["opt"])
        start = int(resume["step"])
        gen.set_state(resume["rng"])
        if run_dir is not None:  # rows an interrupted run logged after its checkpoint are logged again
            runs.trim_metrics(run_dir, start)
    sampler = PhotoCrops(files, cfg.image_size, cfg.load_size, generator=gen)
    criterion = PerceptualLoss(cfg, style, device, encoder)
    # Sample-grid inputs: their own generator, so they are the same on resume and leave the crop stream alone.
    fixed = sampler(min(4, len(files)), torch.Generator().manual_seed(cfg.seed + 1)).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=prec.resolve(cfg.precision, device) == "bf16")
    history: list[dict] = []
    from tqdm import tqdm  # noqa: PLC0415

    # disabled without progress: it then iterates the range and set_postfix does nothing
    bar = tqdm(range(start, cfg.steps), desc="perceptual", initial=start, total=cfg.steps, dynamic_ncols=True,
               file=sys.stderr, disable=not progress)
    t0 = time.perf_counter()
    net.train()
    for step in bar:
        hr = sampler(cfg.batch_size).to(device)
        x = degrade(hr, cfg.upscale) if cfg.task == "sr" else hr
        with autocast:
            out = net(x)
        terms = criterion(out.float(), hr)
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"training diverged at step {step}; lower the lr")
        last = step + 1 == cfg.steps or (cfg.max_seconds > 0 and time.perf_counter() - t0 > cfg.max_seconds)
        if (step + 1) % cfg.log_every == 0 or last:
            row = {"step": step + 1, "loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                   "seconds": time.perf_counter() - t0}
            history.append(row)
            if run_dir is not None:
                runs.append_metrics(run_dir, row)
        bar.set_postfix(loss=f"{loss.item():.4g}")
        if run_dir is not None and ((step + 1) % cfg.sample_every == 0 or last):
            with torch.no_grad(), autocast:
                xs = degrade(fixed, cfg.upscale) if cfg.task == "sr" else fixed
                ys = net.eval()(xs).float().clamp(0, 1)
            net.train()
            inputs = F.interpolate(xs, size=ys.shape[-2:], mode="nearest") if cfg.task == "sr" else xs
            grid = torch.cat([torch.cat(list(inputs), 2), torch.cat(list(ys), 2)], 1)
            io.save_image(grid, run_dir / "samples" / f"{step + 1:06d}.png")
        if run_dir is not None and ((step + 1) % cfg.checkpoint_every == 0 or last):
            save_model(net, cfg, run_dir / "checkpoint.pt",
                       {"opt": opt.state_dict(), "step": step + 1, "rng": gen.get_state()})
        if last:
            break
    net.eval()
    if run_dir is not None:
        save_model(net, cfg, run_dir / "final.pt", {"step": history[-1]["step"] if history else start})
    return net, history


@torch.no_grad()
def apply(net: TransformNet, image: Tensor, device: torch.device | str = "cpu", precision: str = "auto") -> Tensor:
    """Run the trained network on one image: ``[1, 3, H, W]`` -> ``[1, 3, sH, sW]`` in ``[0, 1]`` (CPU).

    The input is cropped to a multiple of the network's downsampling factor. ``precision``
    ``"bf16"`` runs under bf16 autocast; ``"auto"`` does so where bf16 is native.
    """
    m = net.multiple
    h, w = image.shape[-2] // m * m, image.shape[-1] // m * m
    # The first 9x9 conv reflection-pads by 4, which needs each side > 4 (sr inputs are small).
    if h < max(m, 5) or w < max(m, 5):
        raise InputError(f"image {image.shape[-1]}x{image.shape[-2]} is too small for this network")
    x = image[..., :h, :w].to(device)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=prec.resolve(precision, device) == "bf16"):
        y = net.to(device).eval()(x)
    return y.float().clamp(0, 1).cpu()


# ---------------------------------------------------------------------------- CLI


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Option defaults in the help, and epilogs kept as written (one example per line)."""


TRAIN_EXAMPLES = """examples:
  python -m mgan.perceptual train --style picasso.jpg --data photos/ --steps 2000
  python -m mgan.perceptual train --task sr --upscale 4 --data photos/ --steps 2000             # perceptual-sr4
  python -m mgan.perceptual train --task sr --upscale 4 --loss mse --data photos/ --steps 2000  # perceptual-sr4-mse
  python -m mgan.sr_eval --photos set5/ --scale 4 --out sr_eval/ \\
      --net perceptual=runs/00000-perceptual-sr4/final.pt --net mse=runs/00001-perceptual-sr4-mse/final.pt"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mgan.perceptual",
        description="Johnson et al. feed-forward perceptual networks: train on a folder of photos, then stylise "
        "(or super-resolve) images with one forward pass.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=_HelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a network; writes runs/NNNNN-perceptual-<name>/",
                       epilog=TRAIN_EXAMPLES, formatter_class=_HelpFormatter)
    t.add_argument("--task", choices=("style", "sr"), default="style")
    t.add_argument("--loss", choices=("perceptual", "mse"), default=None,
                   help="sr: relu2_2 feature loss (perceptual) or per-pixel MSE on [0, 1] images (mse, no TV); "
                   "default: perceptual, or the resumed run's")
    t.add_argument("--style", type=Path, help="style image (task style)")
    t.add_argument("--data", type=Path, nargs="+", required=True,
                   help="folder(s) of training photos (several folders are pooled)")
    t.add_argument("--config", type=Path, help="YAML config (keys of PerceptualConfig)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set steps=2000 (repeatable)")
    t.add_argument("--steps", type=int, help="shortcut for --set steps=N")
    t.add_argument("--upscale", type=int, help="sr: 2, 4 or 8 (default 4)")
    t.add_argument("--runs", type=Path, default=Path("runs"), help="parent folder of run folders")
    t.add_argument("--name", default=None, help="run name (default: perceptual-<style stem>, perceptual-sr<upscale> or perceptual-sr<upscale>-mse)")
    t.add_argument("--resume", type=Path, help="continue from a run's checkpoint.pt (same run folder)")
    t.add_argument("--dry-run", action="store_true", help="validate inputs and config, print it, exit")
    t.add_argument("--device", default="auto")
    a = sub.add_parser("stylize", aliases=["apply"], help="run a trained network on images",
                       epilog="example: python -m mgan.perceptual stylize --checkpoint RUN/final.pt "
                       "--content photo.jpg --out out.png",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("--checkpoint", type=resolve_checkpoint, required=True,
                   help=f"final.pt or checkpoint.pt of a run, or a bundled network: {', '.join(BUNDLED)} "
                   "(sr4: x4 super-resolution; picasso, starry_night: style networks)")
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--content", type=Path, help="one image")
    g.add_argument("--content-dir", type=Path, help="every image in a folder")
    a.add_argument("--out", type=Path, required=True, help="output image (single) or folder (batch)")
    a.add_argument("--size", type=int, default=None, help="resize the input's longest side first")
    a.add_argument("--device", default="auto")
    a.add_argument("--precision", choices=prec.CHOICES, default="auto", help=prec.HELP)
    for sp in (t, a):
        sp.add_argument("--max-pixels", type=int, default=None, help="raise the decompression-bomb limit")
    return p


def _train_main(args: argparse.Namespace) -> int:
    data, resume = runs.start_config(args.resume, args.config, CHECKPOINT_FORMAT, "perceptual")
    if resume is None:
        data.setdefault("task", args.task)
    if args.steps is not None:
        args.overrides.append(f"steps={args.steps}")
    if args.upscale is not None:
        args.overrides.append(f"upscale={args.upscale}")
    if args.loss is not None:
        args.overrides.append(f"loss={args.loss}")
    apply_overrides(data, args.overrides)
    task = data.pop("task", args.task)
    cfg = PerceptualConfig.for_task(task, **data)
    trained = resume["config"].get("loss", "perceptual") if resume is not None else cfg.loss  # older runs: perceptual
    if cfg.loss != trained:  # Adam's moments and the weights belong to the other objective
        raise InputError(f"loss {cfg.loss}: {args.resume} was trained with loss {trained}; a resumed run keeps its loss")
    files = [f for folder in args.data for f in io.list_images(folder)]
    style = None
    if cfg.task == "style":
        if args.style is None:
            raise InputError("--style is required for task 'style'")
        style = io.load_image(args.style, min_side=16)
    device = resolve_device(args.device)
    if args.dry_run:
        print(dump_yaml(cfg), end="")
        print(f"# {len(files)} training images; dry run, nothing written")
        return 0
    name = args.name or _default_name(cfg, args.style)
    run_dir = runs.open_run(args.runs, name, dump_yaml(cfg), resume=args.resume)
    print(f"run folder: {run_dir}")
    prec.announce(cfg.precision, device)
    train(cfg, files, style, run_dir, device, resume=resume, progress=True)
    print(f"wrote {run_dir / 'final.pt'}")
    return 0


def _default_name(cfg: PerceptualConfig, style: Path | None) -> str:
    """``perceptual-<style stem>``, ``perceptual-sr4`` or ``perceptual-sr4-mse``: the two sr losses never share a name."""
    if cfg.task == "style":
        return f"perceptual-{style.stem if style is not None else 'style'}"
    return f"perceptual-sr{cfg.upscale}" + ("-mse" if cfg.loss == "mse" else "")


def _apply_main(args: argparse.Namespace) -> int:
    net, cfg = load_model(args.checkpoint)
    device = resolve_device(args.device)
    jobs, inputs = io.photo_jobs(args.content, args.content_dir, args.out)
    io.check_outputs([("--out", args.out), *[("--out", dst) for _, dst in jobs if dst != args.out]],
                     [("--checkpoint", args.checkpoint), *inputs])
    prec.announce(args.precision, device)  # after the input checks: a bad input gets one error line
    for src, dst in jobs:
        img = io.load_image(src, max_side=args.size, min_side=net.multiple)
        t = time.perf_counter()
        out = apply(net, img, device, args.precision)
        io.save_image(out, dst)
        print(f"wrote {dst} ({out.shape[-1]}x{out.shape[-2]}, {1000 * (time.perf_counter() - t):.0f} ms)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 ok, 1 failed, 2 bad input, 130 interrupted (mgan.cli.run)."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _run(args), args=args, interrupted="interrupted; the last checkpoint.pt can be resumed with --resume")


def _run(args: argparse.Namespace) -> int:
    io.set_max_pixels(args.max_pixels)
    return _train_main(args) if args.command == "train" else _apply_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
