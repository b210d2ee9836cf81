"""Texture Networks (Ulyanov, Lebedev, Vedaldi & Lempitsky, ICML 2016): feed-forward Gram-loss synthesis.

The MGAN paper's feed-forward comparison ([32]; Sec. 6 and Fig. 15). A generator
``g`` is trained so that its samples have the Gram statistics of one texture
``x0`` (Gatys et al.), and, for stylisation, the content of the photo it is given:

    texture:  theta* = argmin_theta E_z     [ L_T(g(z), x0) ]                                  (Eq. 4)
    style:    theta* = argmin_theta E_{z,y} [ L_T(g(y, z), x0) + alpha L_C(g(y, z), y) ]       (Eq. 5)

with the texture loss ``L_T = sum_l mean (G^l(x) - G^l(x0))^2`` over Gram matrices
normalised by ``C H W`` (:func:`mgan.losses.gram_loss`, exactly texture_nets'
``TextureLoss``) and the content loss ``L_C`` the mean squared relu4_2 difference
(:func:`mgan.losses.content_loss`, texture_nets' ``ContentLoss``). VGG-19 sees the
Caffe preprocessing, as in texture_nets, so the weights keep their meaning.

Generator (paper Sec. 3.1; texture_nets ``models/pyramid.lua``), shapes for a batch
of ``N`` outputs of ``H x W`` and ``K`` scales, ``c`` channels per scale::

    scale k = 1..K (coarse to fine), side s_k = ceil(H / 2^(K-k)):
      input_k [N, 3 (+3 photo in style mode), s_k, s_k]: uniform noise (and the photo, area-downsampled)
      branch_k = conv3x3-norm-act, conv3x3-norm-act, conv1x1-norm-act   -> [N, c, s_k, s_k]
    x_1 = branch_1
    x_k = join_k( cat[ norm(up2(x_{k-1})), norm(branch_k) ] )             -> [N, k c, s_k, s_k]
          (up2: nearest x2, cropped to s_k; norm right before the concatenation, as the paper stresses;
           join_k: the same 3x3, 3x3, 1x1 block at k c channels)
    y = conv1x1(x_K) -> [N, 3, H, W], in Caffe units (0-255 minus the ImageNet mean, as texture_nets)

Sides need not be multiples of ``2^(K-1)``: each coarser side is the ceiling of half
the finer one and the upsampled path is cropped, so any size above ``2^(K-1)`` works
(a texture then tiles seamlessly only when its sides are multiples of ``2^(K-1)``).

Defaults follow the public texture_nets code (DmitryUlyanov/texture_nets), by mode:

=================  =====================================  ==========================================
option             texture (``texture_nets_v1`` branch,    style (``master``: Ulyanov et al. 2017's
                   the paper's texture generator)          instance norm; noise as the paper)
=================  =====================================  ==========================================
scales x channels  6 x 8 (ratios 32..1)                   6 x 8
input              3 uniform noise channels               photo + 3 noise channels (master: photo only,
                                                          ``noise_channels=0``)
norm, activation   batch norm, LeakyReLU(0.01)            instance norm, ReLU
padding            circular (tileable samples)            replicate
style layers       relu1_1 ... relu5_1                    relu1_1 ... relu4_1, content relu4_2
weights            style 1                                style 1, content 1, TV 0
Adam               lr 0.1, x0.8 every 300, batch 16,      lr 1e-3, x0.8 every 2000, batch 1,
                   1500 iterations, 256 px                50k iterations, 256 px crops
=================  =====================================  ==========================================

Where this port differs: VGG-19 keeps its zero padding (texture_nets' README trains
textures with ``-vgg_no_pad true -normalize_gradients true``; its code defaults are
``false``, which we keep); BN at synthesis uses running statistics recomputed over a
few fresh batches after training (the original sampled with BN in train mode, so a
sample depended on its batch); Torch7's BN initialises gamma uniformly in [0, 1],
PyTorch to 1. On a CPU the defaults' iterations take hours: pass ``--steps`` (and a
smaller ``image_size`` / ``batch_size``) for a quick model, as the help example does.

CLI::

    python -m mgan.texture_nets train --texture pebbles.jpg --steps 300 --set image_size=128 --set batch_size=4
    python -m mgan.texture_nets synthesize --checkpoint runs/00000-texture_nets-pebbles/final.pt --size 512 --out t.png
    python -m mgan.texture_nets train --mode style --style picasso.jpg --data photos/ --steps 2000
    python -m mgan.texture_nets synthesize --checkpoint RUN/final.pt --content tubingen.jpg --out out.png
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgan import cli, io, losses, runs
from mgan import precision as prec  # `precision` is a parameter name below
from mgan.config import apply_overrides, check_choices, dump_yaml, from_dict, to_dict
from mgan.data import PhotoCrops
from mgan.errors import ConfigError, InputError, one_line
from mgan.vgg import CAFFE_MEAN_BGR, VGG19Encoder, check_feature_layer

CHECKPOINT_FORMAT = "mgan-texture-nets-v1"
TEXTURE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # texture_nets_v1 texture_train.lua
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")  # texture_nets master train.lua
CALIBRATION_BATCHES = 4  # fresh batches over which BN running statistics are recomputed
Padding = Literal["circular", "replicate", "zeros"]  # the 3x3 convs' padding_mode


@dataclass
class TextureNetsConfig:
    """Options of a Texture Network and its training (defaults: texture mode; see :meth:`for_mode`)."""

    mode: Literal["texture", "style"] = "texture"
    image_size: int = 256  # training side (texture samples; style: photo crops)
    style_size: int = 256  # longest side of the texture / style image
    load_size: int = 0  # style: photos' shorter side before cropping (0: image_size)
    scales: int = 6  # K noise resolutions, 1/2^(K-1) .. 1 (texture_nets: ratios 32..1)
    channels: int = 8  # per scale (texture_nets' conv_num); the finest join has scales x channels
    noise_channels: int = 3  # uniform noise channels per scale (texture_nets' noise_depth)
    norm: Literal["batch", "instance"] = "batch"
    activation: Literal["leaky", "relu"] = "leaky"  # leaky: LeakyReLU(0.01), Torch7's default slope
    padding: Literal["circular", "replicate", "zeros"] = "circular"
    batch_size: int = 16
    steps: int = 1500
    lr: float = 0.1
    lr_decay: float = 0.8  # lr multiplied by this every lr_decay_every steps
    lr_decay_every: int = 300
    style_layers: tuple[str, ...] = TEXTURE_LAYERS
    content_layer: str = "relu4_2"  # style mode only
    style_weight: float = 1.0
    content_weight: float = 1.0  # style mode only
    tv_weight: float = 0.0  # on the 0-255 image, summed / batch
    seed: int = 0
    precision: str = "auto"  # "auto": bf16 where native (mgan.precision), "fp32", "bf16"
    log_every: int = 10
    sample_every: int = 100
    checkpoint_every: int = 100
    max_seconds: float = 0.0  # stop early (and save) after this much training time; 0: no limit

    def validate(self) -> None:
        """Raise ConfigError naming the key for impossible values."""
        check_choices(self)
        if not 1 <= self.scales <= 10:
            raise ConfigError(f"scales: must be 1..10, got {self.scales}")
        if self.image_size <= 2 ** (self.scales - 1) or self.image_size > 4096:
            raise ConfigError(f"image_size: must be > 2^(scales-1) = {2 ** (self.scales - 1)} (the coarsest "
                              f"scale needs 2 px) and <= 4096, got {self.image_size}")
        if self.style_size < 16:
            raise ConfigError(f"style_size: must be >= 16, got {self.style_size}")
        if self.load_size and self.load_size < self.image_size:
            raise ConfigError(f"load_size: must be 0 or >= image_size ({self.image_size}), got {self.load_size}")
        if self.channels < 1 or self.noise_channels < 0:
            raise ConfigError("channels must be >= 1 and noise_channels >= 0")
        if self.mode == "texture" and self.noise_channels < 1:
            raise ConfigError("noise_channels: texture mode needs >= 1 (noise is its only input)")
        if self.batch_size < 1 or self.steps < 0:
            raise ConfigError(f"batch_size must be >= 1 and steps >= 0, got {self.batch_size}, {self.steps}")
        if not self.lr > 0 or not 0 < self.lr_decay <= 1 or self.lr_decay_every < 1:
            raise ConfigError("lr must be > 0, lr_decay in (0, 1], lr_decay_every >= 1")
        if not self.style_layers:
            raise ConfigError("style_layers: give at least one layer")
        for name in self.style_layers:
            check_feature_layer(name, "style_layers")
        check_feature_layer(self.content_layer, "content_layer")
        for name in ("style_weight", "content_weight", "tv_weight", "max_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        prec.check(self.precision)
        for name in ("log_every", "sample_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")

    @classmethod
    def for_mode(cls, mode: str, **overrides: object) -> TextureNetsConfig:
        """The public code's defaults of ``mode`` (module docstring table) with ``overrides``; validated."""
        base: dict = {"mode": mode}
        if mode == "style":
            base.update(norm="instance", activation="relu", padding="replicate", batch_size=1, steps=50000,
                        lr=1e-3, lr_decay_every=2000, style_layers=STYLE_LAYERS, log_every=50,
                        sample_every=500, checkpoint_every=1000)
        base.update(overrides)
        return from_dict(cls, base)

    @property
    def min_side(self) -> int:
        """Smallest output side: the coarsest scale needs 2 px for its normalisation statistics."""
        return 2 ** (self.scales - 1) + 1

    @property
    def in_channels(self) -> int:
        """Channels of each scale's input: noise, plus the photo's 3 in style mode."""
        return self.noise_channels + (3 if self.mode == "style" else 0)


# ---------------------------------------------------------------------------- generator


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.InstanceNorm2d(channels, affine=True)


class ConvBlock(nn.Sequential):
    """conv3x3, conv3x3, conv1x1, each followed by normalisation and the activation (paper Sec. 3.1).

    ``[N, cin, H, W] -> [N, cout, H, W]``; the 3x3 convs pad with ``padding`` (circular
    for textures: the sample wraps around, as texture_nets_v1's ``convc``).
    """

    def __init__(self, cin: int, cout: int, norm: str, activation: str, padding: Padding) -> None:
        layers: list[nn.Module] = []
        for k, c in ((3, cin), (3, cout), (1, cout)):
            layers += [nn.Conv2d(c, cout, k, padding=k // 2, padding_mode=padding if k > 1 else "zeros"),
                       _norm(norm, cout),
                       nn.LeakyReLU(0.01, inplace=True) if activation == "leaky" else nn.ReLU(inplace=True)]
        super().__init__(*layers)


def pyramid_sizes(height: int, width: int, scales: int) -> list[tuple[int, int]]:
    """Sides of the ``scales`` inputs, coarse to fine: each is the ceiling of half the next finer one."""
    sizes = [(height, width)]
    for _ in range(scales - 1):
        h, w = sizes[0]
        sizes.insert(0, ((h + 1) // 2, (w + 1) // 2))
    return sizes


class PyramidGenerator(nn.Module):
    """The multi-scale generator of Texture Networks (module docstring for the diagram).

    Args:
        in_channels: channels of each scale's input (noise, plus 3 for the photo).
        channels: per scale; the join at scale ``k`` has ``k * channels``.
        scales: ``K``.

    Forward:
        ``inputs``: ``K`` tensors ``[N, in_channels, s_k, s_k']``, coarse to fine, sides
        from :func:`pyramid_sizes`. Returns ``[N, 3, H, W]`` in Caffe units (texture_nets'
        output: 0-255 minus the ImageNet mean); :func:`to_image` maps it to RGB ``[0, 1]``.
    """

    def __init__(self, in_channels: int, channels: int = 8, scales: int = 6, norm: str = "batch",
                 activation: str = "leaky", padding: Padding = "circular") -> None:
        super().__init__()
        self.scales = scales
        self.branches = nn.ModuleList(ConvBlock(in_channels, channels, norm, activation, padding)
                                      for _ in range(scales))
        # Normalisation right before each concatenation, on both sides (paper Sec. 3.1: it matters most there).
        self.coarse_norms = nn.ModuleList(_norm(norm, k * channels) for k in range(1, scales))
        self.fine_norms = nn.ModuleList(_norm(norm, channels) for _ in range(1, scales))
        self.joins = nn.ModuleList(ConvBlock((k + 1) * channels, (k + 1) * channels, norm, activation, padding)
                                   for k in range(1, scales))
        self.to_rgb = nn.Conv2d(scales * channels, 3, 1)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:  # noqa: D102
        if len(inputs) != self.scales:
            raise ValueError(f"expected {self.scales} inputs (one per scale), got {len(inputs)}")
        x = self.branches[0](inputs[0])
        for k in range(1, self.scales):
            h, w = inputs[k].shape[-2:]
            if 2 * x.shape[-2] < h or 2 * x.shape[-1] < w:
                raise ValueError(f"scale {k}: input {h}x{w} is more than twice the coarser {tuple(x.shape[-2:])}")
            up = F.interpolate(x, scale_factor=2.0, mode="nearest")[..., :h, :w]
            fine = self.fine_norms[k - 1](self.branches[k](inputs[k]))
            x = self.joins[k - 1](torch.cat([self.coarse_norms[k - 1](up), fine], 1))
        return self.to_rgb(x)


def build_generator(cfg: TextureNetsConfig) -> PyramidGenerator:
    """The generator of ``cfg``, initialised from ``cfg.seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return PyramidGenerator(cfg.in_channels, cfg.channels, cfg.scales, cfg.norm, cfg.activation, cfg.padding)


_CAFFE_MEAN_RGB = tuple(reversed(CAFFE_MEAN_BGR))


def to_image(y: Tensor) -> Tensor:
    """Generator output in Caffe units ``[N, 3, H, W]`` -> RGB in ``[0, 1]`` (not clamped).

    texture_nets' generator writes the VGG input directly (0-255 minus the mean); we
    keep that parametrisation, so Adam's lr 0.1 means what it means there.
    """
    mean = torch.tensor(_CAFFE_MEAN_RGB, device=y.device, dtype=y.dtype).view(1, 3, 1, 1)
    return (y + mean) / 255.0


def make_inputs(cfg: TextureNetsConfig, n: int, height: int, width: int, generator: torch.Generator,
                photo: Tensor | None = None, device: torch.device | str = "cpu") -> list[Tensor]:
    """The ``K`` generator inputs, coarse to fine: ``[n, in_channels, s_k, s_k']`` each.

    Noise is uniform in ``[0, 1)`` (texture_nets' ``NoiseFill``), drawn on the CPU from
    ``generator`` so a seed gives the same sample on every device. In style mode the
    photo ``[n, 3, height, width]`` is area-downsampled to each scale (texture_nets
    average-pools by the scale's ratio) and comes before the noise channels.
    """
    if (photo is None) != (cfg.mode == "texture"):
        raise ValueError(f"{cfg.mode} mode {'takes no' if cfg.mode == 'texture' else 'needs a'} photo")
    out = []
    for h, w in pyramid_sizes(height, width, cfg.scales):
        parts = []
        if photo is not None:
            parts.append(F.adaptive_avg_pool2d(photo.to(device), (h, w)))
        if cfg.noise_channels:
            parts.append(torch.rand(n, cfg.noise_channels, h, w, generator=generator).to(device))
        out.append(torch.cat(parts, 1))
    return out


# ---------------------------------------------------------------------------- data and loss


class TextureNetsLoss(nn.Module):
    """``style_weight L_T + content_weight L_C + tv_weight TV`` on a frozen VGG-19 (Eqs. 4-5).

    Args:
        cfg: layers and weights.
        style: ``[1, 3, H, W]`` texture or style image in ``[0, 1]`` (used at its size).
        encoder: optional shared VGG holding the needed taps.
    """

    def __init__(self, cfg: TextureNetsConfig, style: Tensor, device: torch.device | str = "cpu",
                 encoder: VGG19Encoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.content = cfg.mode == "style" and cfg.content_weight > 0
        taps = tuple(dict.fromkeys((*cfg.style_layers, *([cfg.content_layer] if self.content else []))))
        if encoder is not None and not set(taps) <= set(encoder.layers):
            raise ValueError(f"the shared encoder lacks taps {sorted(set(taps) - set(encoder.layers))}")
        self.encoder = (encoder or VGG19Encoder(taps, precision=prec.resolve(cfg.precision, device))).to(device)
        self.taps = taps
        with torch.no_grad():
            feats = self.encoder(style.to(device), cfg.style_layers)
        self.grams = {k: losses.gram(v).detach() for k, v in feats.items()}

    def forward(self, image: Tensor, photo: Tensor | None = None) -> dict[str, Tensor]:
        """Loss terms (fp32 scalars) for outputs ``[N, 3, H, W]`` in ``[0, 1]`` and, in style mode, their photos."""
        cfg = self.cfg
        feats = self.encoder(image, self.taps)
        # validate() requires a style layer, so sum() adds Tensors, never returning its int start 0
        style = cast(Tensor, sum(losses.gram_loss(feats[k], g) for k, g in self.grams.items()))
        terms = {"style": cfg.style_weight * style}
        if self.content:
            with torch.no_grad():
                target = self.encoder(photo, [cfg.content_layer])[cfg.content_layer]
            terms["content"] = cfg.content_weight * losses.content_loss(feats[cfg.content_layer], target)
        if cfg.tv_weight > 0:
            terms["tv"] = cfg.tv_weight * losses.tv_loss(image.float() * 255.0) / image.shape[0]
        return terms


# ---------------------------------------------------------------------------- training


def learning_rate(cfg: TextureNetsConfig, step: int) -> float:
    """texture_nets' schedule: ``lr * lr_decay ** (step // lr_decay_every)`` (0-based ``step``)."""
    return cfg.lr * cfg.lr_decay ** (step // cfg.lr_decay_every)


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for the generator only when ``precision`` is explicitly ``"bf16"``.

    Its 8-48 channel convolutions gain nothing dependable from bf16 on a CPU with native
    bf16 (AVX-512-bf16, 2 cores: 512^2 synthesis 0.5-2.7 s against 0.75 s in fp32, and a
    64 px training step under autocast was over 10x slower than fp32), so ``"auto"`` keeps
    the generator in fp32 and gives bf16 to the VGG loss network only.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def calibrate(net: PyramidGenerator, cfg: TextureNetsConfig, photos: PhotoCrops | None = None,
              device: torch.device | str = "cpu", batches: int = CALIBRATION_BATCHES) -> None:
    """Recompute batch-norm running statistics as the plain mean over ``batches`` fresh batches.

    Training uses batch statistics, so the running averages (what synthesis uses) lag
    behind weights that Adam at lr 0.1 moves quickly; recomputing them with the final
    weights fixes that. The batches come from their own seed (``cfg.seed + 2``) and
    training never reads running statistics, so calling this does not change training.
    No-op for instance norm.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    device = torch.device(device)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = net.training
    net.train()
    try:
        for _ in range(batches):
            photo = photos(cfg.batch_size, gen) if photos is not None else None
            net(make_inputs(cfg, cfg.batch_size, cfg.image_size, cfg.image_size, gen, photo, device))
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        net.train(was_training)


def save_model(net: PyramidGenerator, cfg: TextureNetsConfig, path: Path, extra: dict | None = None) -> Path:
    """Write a checkpoint dict (format tag, config, weights, plus ``extra``) atomically."""
    return io.save_checkpoint({"format": CHECKPOINT_FORMAT, "config": to_dict(cfg), "net": net.state_dict(),
                               **(extra or {})}, path)


def load_model(path: str | Path) -> tuple[PyramidGenerator, TextureNetsConfig]:
    """A trained generator (``final.pt`` or ``checkpoint.pt``) in eval mode; InputError if the file is not one."""
    ckpt = io.load_checkpoint(path)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a Texture Networks checkpoint (format {ckpt.get('format')!r})")
    try:
        cfg = from_dict(TextureNetsConfig, ckpt["config"])
        net = build_generator(cfg)
        net.load_state_dict(ckpt["net"])
    except (KeyError, RuntimeError, ConfigError, TypeError) as exc:
        raise InputError(f"{path}: checkpoint does not fit its config ({one_line(exc)[:160]})") from None
    return net.eval(), cfg


def _sample_grid(net: PyramidGenerator, cfg: TextureNetsConfig, fixed: list[Tensor], photos: Tensor | None,
                 device: torch.device) -> Tensor:
    """``[1, 3, (2) S, n S]``: the fixed-seed samples in a row (under their photos in style mode)."""
    net.eval()
    with torch.no_grad():
        ys = to_image(net(fixed)).clamp(0, 1).cpu()
    net.train()
    row = torch.cat(list(ys), 2)
    if photos is not None:
        row = torch.cat([torch.cat(list(photos), 2), row], 1)
    return row.unsqueeze(0)


def train(
    cfg: TextureNetsConfig,
    style: Tensor,
    files: Sequence[Path] | None = None,
    run_dir: Path | None = None,
    device: torch.device | str = "cpu",
    resume: dict | None = None,
    progress: bool = False,
    encoder: VGG19Encoder | None = None,
) -> tuple[PyramidGenerator, list[dict]]:
    """Train a generator on ``style`` (and, in style mode, random crops of ``files``); Eqs. (4)-(5).

    Each step draws fresh noise (and crops) from one ``torch.Generator`` seeded with
    ``cfg.seed``, whose state goes into ``checkpoint.pt`` with the weights, Adam's state and
    the step, so a resumed run continues exactly as an uninterrupted one. Writes
    ``metrics.jsonl``, sample grids, ``checkpoint.pt`` and ``final.pt`` into ``run_dir``
    when given.

    Args:
        style: ``[1, 3, H, W]`` texture (texture mode) or style image, RGB in ``[0, 1]``.
        files: training photos (style mode).
        resume: a ``checkpoint.pt`` dict to continue from.
        encoder: optional shared VGG with the loss taps.

    Returns:
        The generator in eval mode (BN statistics recomputed, :func:`calibrate`) and the logged rows.
    """
    cfg.validate()
    device = torch.device(device)
    if cfg.mode == "style" and not files:
        raise InputError("style mode trains on photos: give a folder of them (--data)")
    net = build_generator(cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = 0
    if resume is not None:
        net.load_state_dict(resume["net"])
        opt.load_state_dict(resume["opt"])
        start = int(resume["step"])
        gen.set_state(resume["rng"])
        if run_dir is not None:
            runs.trim_metrics(run_dir, start)
    # style mode has files (checked above); `and files` says so to the type checker
    crops = PhotoCrops(files, cfg.image_size, cfg.load_size) if cfg.mode == "style" and files else None
    criterion = TextureNetsLoss(cfg, style, device, encoder)
    # Sample-grid inputs: their own generator, so they are the same on resume and leave the training stream alone.
    fixed_gen = torch.Generator().manual_seed(cfg.seed + 1)
    fixed_photos = crops(4, fixed_gen) if crops is not None else None
    fixed = make_inputs(cfg, 4, cfg.image_size, cfg.image_size, fixed_gen, fixed_photos, device)
    history: list[dict] = []
    from tqdm import tqdm  # noqa: PLC0415

    # disabled without progress: it then iterates the range and set_postfix does nothing
    bar = tqdm(range(start, cfg.steps), desc="texture_nets", initial=start, total=cfg.steps, dynamic_ncols=True,
               file=sys.stderr, disable=not progress)
    t0 = time.perf_counter()
    net.train()
    step = start - 1
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        photo = crops(cfg.batch_size, gen).to(device) if crops is not None else None
        inputs = make_inputs(cfg, cfg.batch_size, cfg.image_size, cfg.image_size, gen, photo, device)
        # The generator trains in fp32 (see _autocast); cfg.precision sets the VGG loss network's.
        terms = criterion(to_image(net(inputs)), photo)
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"training diverged at step {step + 1}; lower the lr")
        last = step + 1 == cfg.steps or (cfg.max_seconds > 0 and time.perf_counter() - t0 > cfg.max_seconds)
        if (step + 1) % cfg.log_every == 0 or last:
            row = {"step": step + 1, "loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                   "lr": learning_rate(cfg, step), "seconds": time.perf_counter() - t0}
            history.append(row)
            if run_dir is not None:
                runs.append_metrics(run_dir, row)
        bar.set_postfix(loss=f"{loss.item():.4g}")
        save_now = run_dir is not None and ((step + 1) % cfg.checkpoint_every == 0 or last)
        sample_now = run_dir is not None and ((step + 1) % cfg.sample_every == 0 or last)
        if save_now or sample_now:
            calibrate(net, cfg, crops, device)  # what synthesis from this checkpoint will see
        if sample_now and run_dir is not None:  # sample_now implies a run_dir; said again for the type checker
            io.save_image(_sample_grid(net, cfg, fixed, fixed_photos, device),
                          run_dir / "samples" / f"{step + 1:06d}.png")
        if save_now and run_dir is not None:
            save_model(net, cfg, run_dir / "checkpoint.pt",
                       {"opt": opt.state_dict(), "step": step + 1, "rng": gen.get_state()})
        if last:
            break
    calibrate(net, cfg, crops, device)
    net.eval()
    if run_dir is not None:
        save_model(net, cfg, run_dir / "final.pt", {"step": step + 1})
    return net, history


# ---------------------------------------------------------------------------- synthesis


def _check_side(cfg: TextureNetsConfig, height: int, width: int) -> None:
    if min(height, width) < cfg.min_side:
        raise InputError(f"{width}x{height} is too small for this {cfg.scales}-scale generator; "
                            f"each side must be at least {cfg.min_side} px")


@torch.no_grad()
def synthesize(net: PyramidGenerator, cfg: TextureNetsConfig, height: int, width: int, seed: int = 0,
               count: int = 1, device: torch.device | str = "cpu", precision: str = "auto") -> Tensor:
    """Texture samples ``[count, 3, height, width]`` in ``[0, 1]`` (CPU) from noise drawn with ``seed``.

    One forward pass at any size above ``2^(scales-1)`` (the same seed gives the same
    samples). ``precision`` ``"bf16"`` runs under bf16 autocast; ``"auto"`` where native.
    """
    if cfg.mode != "texture":
        raise InputError("this generator was trained for style transfer: give a photo (--content)")
    _check_side(cfg, height, width)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    inputs = make_inputs(cfg, count, height, width, gen, None, device)
    with _autocast(precision, device):
        y = net.to(device).eval()(inputs)
    return to_image(y.float()).clamp(0, 1).cpu()


@torch.no_grad()
def stylize(net: PyramidGenerator, cfg: TextureNetsConfig, photo: Tensor, seed: int = 0,
            device: torch.device | str = "cpu", precision: str = "auto") -> Tensor:
    """Stylise ``[1, 3, H, W]`` (RGB ``[0, 1]``) with one forward pass: ``[1, 3, H, W]`` in ``[0, 1]`` (CPU).

    ``seed`` draws the noise channels concatenated with the photo at every scale.
    """
    if cfg.mode != "style":
        raise InputError("this generator synthesises textures from noise: it takes no photo (use --size)")
    _check_side(cfg, *photo.shape[-2:])
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    inputs = make_inputs(cfg, photo.shape[0], photo.shape[-2], photo.shape[-1], gen, photo, device)
    with _autocast(precision, device):
        y = net.to(device).eval()(inputs)
    return to_image(y.float()).clamp(0, 1).cpu()


# ---------------------------------------------------------------------------- CLI


def _size_arg(text: str) -> tuple[int, int]:
    """``512`` -> (512, 512); ``768x512`` -> (height 512, width 768)."""
    w, sep, h = text.lower().partition("x")
    try:
        width, height = int(w), int(h) if sep else int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIDE or WIDTHxHEIGHT, got {text!r}") from None
    if width < 1 or height < 1 or width * height > 64_000_000:
        raise argparse.ArgumentTypeError(f"size must be positive and at most 64 megapixels, got {text!r}")
    return height, width


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mgan.texture_nets",
        description="Texture Networks (Ulyanov et al. 2016): train a multi-scale feed-forward generator with the "
        "Gram loss on one texture (or a style plus photos), then synthesise with one forward pass.",
        epilog="example: python -m mgan.texture_nets train --texture pebbles.jpg --steps 300 "
        "--set image_size=128 --set batch_size=4",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a generator; writes runs/NNNNN-texture_nets-<name>/",
                       epilog="examples: python -m mgan.texture_nets train --texture pebbles.jpg --steps 300 "
                       "--set image_size=128 --set batch_size=4\n"
                       "          python -m mgan.texture_nets train --mode style --style picasso.jpg --data photos/ "
                       "--steps 2000",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--mode", choices=("texture", "style"), default="texture",
                   help="texture: noise -> texture; style: photo + noise -> stylised photo")
    t.add_argument("--texture", "--style", dest="style", type=Path, help="the texture (or style) image")
    t.add_argument("--data", type=Path, help="folder of training photos (style mode)")
    t.add_argument("--config", type=Path, help="YAML config (keys of TextureNetsConfig)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set image_size=128 (repeatable)")
    t.add_argument("--steps", type=int, help="shortcut for --set steps=N (default 1500 texture, 50000 style)")
    t.add_argument("--precision", choices=prec.CHOICES, help="shortcut for --set precision=...; " + prec.HELP)
    t.add_argument("--runs", type=Path, default=Path("runs"), help="parent folder of run folders")
    t.add_argument("--name", default=None, help="run name (default: texture_nets-<texture stem>)")
    t.add_argument("--resume", type=Path, help="continue from a run's checkpoint.pt (same run folder)")
    t.add_argument("--dry-run", action="store_true", help="validate inputs and config, print it, exit")
    t.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    s = sub.add_parser("synthesize", aliases=["synthesise", "stylize"], help="sample textures or stylise photos",
                       epilog="examples: python -m mgan.texture_nets synthesize --checkpoint RUN/final.pt --size 512 "
                       "--out texture.png\n"
                       "          python -m mgan.texture_nets synthesize --checkpoint RUN/final.pt --content photo.jpg "
                       "--out out.png",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--checkpoint", type=Path, required=True, help="final.pt or checkpoint.pt of a run")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--size", type=_size_arg, help="texture models: output SIDE or WIDTHxHEIGHT (default: training size)")
    g.add_argument("--content", type=Path, help="style models: one photo")
    g.add_argument("--content-dir", type=Path, help="style models: every image in a folder")
    s.add_argument("--max-side", type=int, default=None, help="style: resize each photo's longest side to this first")
    s.add_argument("--out", type=Path, required=True, help="output image (or folder, with --content-dir)")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise")
    s.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    s.add_argument("--precision", choices=prec.CHOICES, default="auto", help=prec.HELP)
    for sp in (t, s):
        sp.add_argument("--max-pixels", type=int, default=None, help="raise the decompression-bomb limit")
    return p


def _train_config(args: argparse.Namespace) -> tuple[TextureNetsConfig, dict | None]:
    """The resolved config (from --resume's checkpoint, or --mode, --config and --set) and the resume dict."""
    data, resume = runs.start_config(args.resume, args.config, CHECKPOINT_FORMAT, "Texture Networks")
    if resume is None:
        data.setdefault("mode", args.mode)
    if args.steps is not None:
        args.overrides.append(f"steps={args.steps}")
    if args.precision is not None:
        args.overrides.append(f"precision={args.precision}")
    apply_overrides(data, args.overrides)
    mode = data.pop("mode", args.mode)  # for_mode's from_dict refuses a mode other than texture or style
    return TextureNetsConfig.for_mode(mode, **data), resume


def _train_main(args: argparse.Namespace) -> int:
    cfg, resume = _train_config(args)
    if args.style is None:
        raise InputError("--texture (or --style) IMAGE is required")
    style = io.load_image(args.style, max_side=cfg.style_size, min_side=16)
    files = None
    if cfg.mode == "style":
        if args.data is None:
            raise InputError("style mode trains on photos: give --data FOLDER")
        files = io.list_images(args.data)
    device = cli.resolve_device(args.device)
    if args.dry_run:
        print(dump_yaml(cfg), end="")
        print(f"# {cfg.mode} mode, {len(files or [])} training photos; dry run, nothing written")
        return 0
    run_dir = runs.open_run(args.runs, args.name or f"texture_nets-{args.style.stem}", dump_yaml(cfg),
                            resume=args.resume)
    print(f"run folder: {run_dir}")
    print(f"{prec.describe(cfg.precision, device)} for the VGG loss network; the generator trains in fp32",
          file=sys.stderr)
    train(cfg, style, files, run_dir, device, resume=resume, progress=True)
    print(f"wrote {run_dir / 'final.pt'}")
    return 0


def _announce_generator(precision: str, device: torch.device) -> None:
    """The precision line of synthesis: the generator's, which ``auto`` keeps in fp32 (see :func:`_autocast`)."""
    if precision == "bf16":
        prec.announce(precision, device)
    else:
        print(f"precision: fp32 ({precision}: the small generator stays in fp32; --precision bf16 to override)",
              file=sys.stderr)


def _synthesize_main(args: argparse.Namespace) -> int:
    net, cfg = load_model(args.checkpoint)
    device = cli.resolve_device(args.device)
    if args.max_side is not None and args.max_side < cfg.min_side:
        raise InputError(f"--max-side: must be at least {cfg.min_side} for this generator")
    if cfg.mode == "texture":
        if args.content is not None or args.content_dir is not None:
            raise InputError("this generator synthesises textures from noise: give --size, not a photo")
        height, width = args.size or (cfg.image_size, cfg.image_size)
        _check_side(cfg, height, width)
        io.check_output_image(args.out)
        io.check_outputs([("--out", args.out)], [("--checkpoint", args.checkpoint)])
        _announce_generator(args.precision, device)  # after the input checks: a bad input gets one error line
        t = time.perf_counter()
        out = synthesize(net, cfg, height, width, args.seed, 1, device, args.precision)
        io.save_image(out, args.out)
        print(f"wrote {args.out} ({width}x{height}, {1000 * (time.perf_counter() - t):.0f} ms)")
        return 0
    if args.content is None and args.content_dir is None:
        raise InputError("this generator stylises photos: give --content PHOTO or --content-dir FOLDER")
    jobs, inputs = io.photo_jobs(args.content, args.content_dir, args.out)
    io.check_outputs([("--out", dst) for _, dst in jobs], [("--checkpoint", args.checkpoint), *inputs])
    _announce_generator(args.precision, device)
    for src, dst in jobs:
        photo = io.load_image(src, max_side=args.max_side, min_side=cfg.min_side)
        t = time.perf_counter()
        out = stylize(net, cfg, photo, args.seed, device, args.precision)
        io.save_image(out, dst)
        print(f"wrote {dst} ({out.shape[-1]}x{out.shape[-2]}, {1000 * (time.perf_counter() - t):.0f} ms)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 ok, 1 failed, 2 bad input, 130 interrupted (mgan.cli.run)."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _run(args), args=args,
                   interrupted="interrupted; the last checkpoint.pt can be resumed with --resume")


def _run(args: argparse.Namespace) -> int:
    io.set_max_pixels(args.max_pixels)
    return _train_main(args) if args.command == "train" else _synthesize_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
