"""Feed-forward MGAN decoding: photos, folders, videos and noise, at any size (paper Sec. 4-5).

The released generator ``G`` decodes VGG-19 relu4_1 features of an image (a photo for
style transfer, Perlin or brown noise for unguided texture synthesis, Fig. 13) into
the trained style: ``image -> VGG relu4_1 -> G -> image``. :class:`Decoder` is the
engine (also used by training and evaluation code); :func:`main` is the CLI.

Any size in bounded memory: the image is cut into tiles whose halo covers the receptive
field of encoder and ``G`` (:mod:`mgan.tiling`, which holds the argument why the tiled
result *is* the untiled decode, and why the wrap-around halo of ``--tileable`` equals
circular padding). The tile side is chosen from a memory budget (``tile_memory_mb``).
Videos are read and written frame by frame with their timestamps (:mod:`mgan.video`).

**G's BatchNorm statistics** (``bn_stats``, CLI ``--bn-stats``). The original code left
BN in train mode at test time: every output was normalised with its own batch's
statistics. ``"image"`` (the default) does that per image, and so that tiling and
batching cannot change a pixel, it does it in two steps: the statistics of each BN input
are measured once per image, untiled, on the image scaled to at most ``stats_side``
(1024 px) on its longest side (:meth:`Decoder.set_image_stats`, :func:`set_bn_stats`) and
written into G's BN buffers; then the image is decoded, tiled or not, by that fixed G in
eval mode. An image that is decoded in one untiled pass anyway gets both in that pass.
``"running"`` uses the running statistics of training instead, folded into the preceding
(fractionally-strided) convolutions: one G for every image, which is what the exported
backends and ``--compile`` hold.
Measured with the bundled Picasso G (2-core AMD EPYC AVX-512-bf16; docs/decoding.md):
the running statistics, made on 128 px training crops, give the photo's own style
distance (SWD 0.641 vs the photo's 0.615 on imagenet100/test at 384 px) and pale, smooth
Perlin textures (0.595 at 512 px); per-image statistics give 0.541 and 0.435, with the
self-portrait's dark outlines and ochre palette in flat regions.

CLI::

    python -m mgan.decode --input photo.jpg --out out.png
    python -m mgan.decode --input photos/ --out outs/ --size 1024
    python -m mgan.decode --input clip.mp4 --out clip_mgan.mp4 --size 1080x810
    python -m mgan.decode --noise perlin --size 1024 --seed 3 --out texture.png
    python -m mgan.decode --noise brown --size 512 --tileable --out tile.png
    python -m mgan.decode --list-models
    python -m mgan.decode --style picasso --input photo.jpg --strength 0.6 --preserve-colors --mask mask.png

**G's output post-process** (``postprocess``, CLI ``--postprocess``). G learns MDAN's
outputs, which are post-processed (guided: the original's mean +-2 std stretch; unguided:
the painting's RGB mean and covariance, :func:`mgan.colour.match`); trained with a pixel
MSE, G regresses towards its targets' mean and keeps about 80% of their contrast (the
bundled Picasso G: pixel std 0.19-0.20 against its targets' 0.24). ``"auto"`` (the default)
gives each decoded image the painting's RGB mean and covariance (``"match"``) where the
release carries them (``extra["style_colour"]``: every release of ``mgan.train`` and the
bundled models), else ``"minmax"``, the original ``demo_MGAN.lua``'s normalisation of each
output's range to ``[0, 1]``; ``"stretch"`` is MDAN's stretch and ``"none"`` keeps G's
output as it is. Each is measured on the whole output (tiled = untiled; a ``--tileable``
output still wraps). Measured (docs/training.md, "G's output gets its painting's colours"):
``match`` takes the six bundled models' SWD to their paintings from 0.37-0.52 to 0.24-0.36 on
../shared/data/photo at 256 px, at a higher content distance.

**The border margin** (``margin``, CLI ``--margin``). VGG and G pad every convolution with
zeros, so near the canvas edge both see a dark frame that the image does not have, and the
bundled Picasso G paints a grey-green band there, about 16 px wide (the red channel 20-25%
down in the outer 8 px of a Perlin decode). The decoder therefore pads each image by
``margin`` px (default 32) of its own reflection, decodes that, and crops the margin
away; G's per-image BatchNorm statistics are measured on the image's own cells, not the
margin. Tileable decodes need none (their context is the wrap-around); ``--margin 0`` is
the plain decode of the original code.

Decode-time controls (``--strength``, ``--preserve-colors``, ``--mask``) are per-pixel
mixes of G's output with the photo (:mod:`mgan.controls`), so they keep tiled = untiled.

``--backend`` (default ``auto``) runs the per-tile network through OpenVINO or ONNX Runtime
where installed and faster (:mod:`mgan.backends`); the tiling is the same, so are the pixels
(within 1/255 of torch fp32).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from mgan import cli, colour, controls, io
from mgan import precision as prec  # `precision` is a Decoder argument
from mgan.assets import DEFAULT_MODEL_NAME, asset_path
from mgan.colour import STYLE_COLOUR_KEY  # the release metadata the "match" post-process reads
from mgan.errors import InputError
from mgan.tiling import ENCODER_HALO, Span, axis_spans, run_tiled
from mgan.video import VIDEO_OUT_FORMATS, VideoWriter, is_video, read_video

DEFAULT_MODEL = asset_path(DEFAULT_MODEL_NAME)  # package data (mgan/assets/): an installed wheel has it too

PRECISIONS = ("auto", "fp32", "bf16", "bf16-autocast")
BN_STATS = ("image", "running")  # G's BatchNorm statistics at decode time (module docstring)
POSTPROCESS = ("auto", "match", "stretch", "minmax", "none")  # what G's output gets (module docstring)
STATS_SIDE = 1024  # longest side of the image the per-image statistics are measured on
# Reflected context decoded around a (non-tileable) image and cropped away (module docstring):
# the border band of zero padding reaches ~16-24 px into the bundled Picasso G's decodes, 32 px
# of context removes it (docs/decoding.md, "The border margin").
MARGIN = 32
# Peak working bytes per tile pixel beyond the output buffer, measured on CPU (channels_last,
# full-width G, 512^2 and 1024^2 tiles: ~290 bf16, ~510 fp32) plus ~10% margin; dominated by
# the 64-channel relu1_x maps and oneDNN reorders.
BYTES_PER_PIXEL = {"fp32": 560, "bf16": 320, "bf16-autocast": 560}
DEFAULT_TILE_MEMORY_MB = 512
IMAGE_OUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def fit_margin(margin: int, height: int, width: int, scale: int = 8) -> int:
    """The border margin a ``height x width`` image gets: ``margin`` cut to the largest multiple
    of ``scale`` below the shorter side (a reflection needs fewer px than the side it reflects)."""
    return min(margin, (min(height, width) - 1) // scale * scale)


# ----------------------------------------------------------------------------- network


def fold_batchnorm(net: nn.Sequential) -> nn.Sequential:
    """Fold eval-mode BatchNorm into the preceding Conv2d / ConvTranspose2d.

    ``BN(conv(x)) = conv'(x)`` with the weight scaled per output channel by
    ``gamma / sqrt(var + eps)`` and a bias ``beta - mean * gamma / sqrt(var + eps)``
    (plus the conv's own bias, scaled). Returns a new ``nn.Sequential`` of copies; the
    input is untouched. A residual block's branch is folded the same way (its BNs follow
    its convs). BN layers not preceded by a conv are kept as they are.
    """
    from mgan.generator import ResidualBlock  # noqa: PLC0415

    layers: list[nn.Module] = []
    for m in net:
        prev = layers[-1] if layers else None
        if isinstance(m, ResidualBlock):
            block = _copy_module(m)
            block.branch = fold_batchnorm(m.branch)
            layers.append(block)
        elif isinstance(m, nn.BatchNorm2d) and isinstance(prev, (nn.Conv2d, nn.ConvTranspose2d)):
            # eval-mode BatchNorm (G's) tracks running statistics: the buffers are Tensors
            assert m.running_mean is not None and m.running_var is not None
            scale = (m.weight if m.affine else torch.ones_like(m.running_var)) / torch.sqrt(m.running_var + m.eps)
            shift = (m.bias if m.affine else torch.zeros_like(m.running_mean)) - m.running_mean * scale
            w = prev.weight.detach().clone()
            if isinstance(prev, nn.Conv2d):  # [out, in/groups, kh, kw]
                w *= scale.view(-1, 1, 1, 1)
            else:  # ConvTranspose2d: [in, out/groups, kh, kw]
                if prev.groups != 1:
                    raise ValueError("fold_batchnorm: grouped ConvTranspose2d is not supported")
                w *= scale.view(1, -1, 1, 1)
            b = shift if prev.bias is None else prev.bias.detach() * scale + shift
            fused = _copy_conv(prev, bias=True)
            assert fused.bias is not None  # built with bias=True
            fused.weight.data.copy_(w)
            fused.bias.data.copy_(b.detach())
            layers[-1] = fused
        else:
            layers.append(_copy_module(m))
    return nn.Sequential(*layers)


def _pair(v: str | tuple[int, ...]) -> tuple[int, int]:
    """A built 2-d conv's per-side setting (torch stores an int pair) as the constructors' type."""
    assert not isinstance(v, str)  # padding "same"/"valid": only a Conv2d has it, and passes it on as is
    return v[0], v[1]


def _copy_conv(m: nn.Conv2d | nn.ConvTranspose2d, bias: bool) -> nn.Conv2d | nn.ConvTranspose2d:
    if isinstance(m, nn.ConvTranspose2d):
        return nn.ConvTranspose2d(m.in_channels, m.out_channels, _pair(m.kernel_size), _pair(m.stride),
                                  _pair(m.padding), _pair(m.output_padding), m.groups, bias, _pair(m.dilation))
    padding = m.padding if isinstance(m.padding, str) else _pair(m.padding)
    return nn.Conv2d(m.in_channels, m.out_channels, _pair(m.kernel_size), _pair(m.stride), padding,
                     _pair(m.dilation), m.groups, bias, m.padding_mode)


def _copy_module(m: nn.Module) -> nn.Module:
    import copy  # noqa: PLC0415

    return copy.deepcopy(m)


class _Pipeline(nn.Module):
    """RGB tile ``[N, 3, h, w]`` in ``[0, 1]`` -> decoded tile ``[N, 3, h, w]`` float32 in ``[0, 1]``."""

    def __init__(self, encoder: nn.Module, layer: str, g_net: nn.Module, autocast: bool) -> None:
        super().__init__()
        self.encoder, self.layer, self.g_net, self.autocast = encoder, layer, g_net, autocast

    def features(self, x: Tensor) -> Tensor:
        """The encoder's ``[N, 512, h/8, w/8]`` relu4_1 features of an RGB tile (decode precision)."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.encoder(x, layers=(self.layer,))[self.layer]

    def head(self, feat: Tensor) -> Tensor:
        """G on encoder features: ``[N, 512, h/8, w/8]`` -> ``[N, 3, h, w]`` float32 in ``[0, 1]``."""
        with torch.autocast(feat.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            y = self.g_net(feat)
        return self.to_unit(y)

    @staticmethod
    def to_unit(y: Tensor) -> Tensor:
        """G's tanh output in ``[-1, 1]`` as float32 in ``[0, 1]``."""
        return (y.float() + 1) * 0.5

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def set_bn_stats(g_net: nn.Module, feat: Tensor, through: bool = False, border: int = 0) -> Tensor | None:
    """Give every BatchNorm of ``g_net`` its input's statistics on ``feat``, in order.

    Runs the flat, eval-mode ``g_net`` layer by layer on ``feat`` ``[1, C, h, w]``: at each
    BN the per-channel mean and biased variance of its input (computed in fp32) become its
    running statistics, and the BN then normalises with them, as BN in train mode does for
    a batch of one image (``F.batch_norm`` normalises with the biased variance). Stops after
    the last BN, or with ``through`` runs to the end and returns G's output: the decode of
    ``feat`` with these statistics, computed by the very layers a tiled decode then uses.
    ``border`` (in ``feat`` cells, scaled with each layer's resolution) is left out of the
    statistics: the wrap-around halo of a tileable image, whose core is the periodic decode.
    """
    from mgan.generator import ResidualBlock  # noqa: PLC0415

    layers = list(g_net.children())  # G.net: a flat nn.Sequential, residual blocks its only nesting
    has_bn = [any(isinstance(k, nn.BatchNorm2d) for k in m.modules()) for m in layers]
    last = max((i for i, b in enumerate(has_bn) if b), default=-1)
    x = feat
    for i, m in enumerate(layers):
        if i > last and not through:
            return None
        b = border * (x.shape[-1] // feat.shape[-1])
        if isinstance(m, ResidualBlock):  # its BNs in order, on the block's own input
            branch = set_bn_stats(m.branch, x, through=True, border=b)
            assert branch is not None  # through=True runs to the end
            x = x + branch
            continue
        if has_bn[i] and not isinstance(m, nn.BatchNorm2d):
            raise ValueError(f"set_bn_stats: BatchNorm inside an unsupported {type(m).__name__}")
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            core = x[..., b : x.shape[-2] - b, b : x.shape[-1] - b] if b else x
            var, mean = torch.var_mean(core.float(), dim=(0, 2, 3), correction=0)
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
        x = m(x)
    return x


def _encoder(layer: str, weights: str, pooling: str, precision: str, channels_last: bool, device: str) -> nn.Module:
    """A frozen VGG-19 encoder, shared with every other user of the same settings (it is stateless)."""
    from mgan.vgg import shared_encoder  # noqa: PLC0415

    return shared_encoder((layer,), weights=weights, pooling=pooling, precision=precision,
                          channels_last=channels_last, device=device)


def _compiled(module: nn.Module):
    """``torch.compile`` with Inductor "freezing" (weights folded into the graph as constants).

    Freezing lets Inductor prepack the weights and fuse conv + ReLU in oneDNN: -20% at 512^2
    bf16 on the 2-core CPU, where plain ``torch.compile`` was no faster than eager. It is
    a global Inductor flag read while compiling, and compiling happens on the first call
    per tile shape, so it is patched in around every call rather than set for everyone.
    """
    import torch._inductor.config as inductor_config  # noqa: PLC0415

    fn = torch.compile(module, dynamic=False)

    def run(x: Tensor) -> Tensor:
        with inductor_config.patch(freezing=True):
            return fn(x)

    return run


# ----------------------------------------------------------------------------- engine


class Decoder:
    """Image -> VGG-19 relu4_1 -> G -> image, tiled, at any size (paper Sec. 3.2 and 5).

    Args:
        model: a released generator file (:func:`mgan.generator.save_release`) or a
            :class:`~mgan.generator.Generator` (used in eval mode; not modified).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:0"``, or a device.
        precision: ``"auto"`` (``"bf16"`` where bf16 is native, else ``"fp32"``:
            :mod:`mgan.precision`), ``"bf16"`` (bf16 weights and activations: fastest on
            AMX/AVX-512-bf16 CPUs and GPUs, emulated and slow on AVX2-only CPUs), ``"fp32"``, or ``"bf16-autocast"`` (fp32 weights under autocast;
            slower than ``"bf16"``, kept for comparison).
        tile: tile core side in pixels (rounded to a multiple of 8), ``None`` for no
            tiling, or ``"auto"`` to pick it from ``tile_memory_mb``.
        tile_memory_mb: working-memory budget of one tile for ``tile="auto"``.
        channels_last: NHWC layout (faster oneDNN / cuDNN kernels).
        fold_bn: fold G's BatchNorm into its convolutions (same output, fewer passes; with
            ``bn_stats="running"`` only, as the per-image statistics change per image).
        bn_stats: ``"image"`` (default): G's BatchNorm normalises with each image's own
            statistics, measured on the image at most ``stats_side`` px on its longest side
            (the original's test-time behaviour, made independent of tiling and batching:
            module docstring); ``"running"``: with the running statistics of training.
        stats_side: longest side of the image the ``"image"`` statistics are measured on.
        margin: px of reflected context decoded around each (non-tileable) image and cropped
            away, so its borders are decoded like its middle (module docstring); rounded up to
            a multiple of 8, and cut to fit images narrower than it. 0: no margin.
        postprocess: ``"auto"`` (default): ``"match"`` when the release carries its
            painting's colour moments (``extra["style_colour"]``; every release ``mgan.train``
            writes, and the bundled models), else ``"minmax"``. ``"match"``: each decoded
            image's RGB mean and covariance mapped onto the painting's
            (:func:`mgan.colour.match`, as unguided MDAN's output gets); ``"stretch"``: its
            global contrast stretch, mean +-2 standard deviations to ``[0, 1]``, as MDAN's
            outputs (G's targets) get (:func:`mgan.colour.stretch`); ``"minmax"``: its range to
            ``[0, 1]``, the original demo's (:func:`mgan.colour.minmax`); ``"none"``: G's output
            as it is. Every one is measured on the whole output image.
        compile: ``torch.compile`` the pipeline (slow first call per tile shape).
        backend: ``"torch"`` (default), ``"openvino"``, ``"onnxruntime"`` or ``"auto"`` (the
            fastest here, measured once and cached): :mod:`mgan.backends`. Only the per-tile
            network is swapped; tiling is unchanged (same pixels within 1/255). The exported
            nets hold one G, so they need ``bn_stats="running"``; ``"auto"`` keeps torch otherwise.
    """

    extra: dict  # the release file's extra metadata ({} for a Generator passed in)

    def __init__(
        self,
        model: str | os.PathLike | nn.Module = DEFAULT_MODEL,
        device: str | torch.device = "auto",
        precision: str = "auto",
        tile: int | str | None = "auto",
        tile_memory_mb: float = DEFAULT_TILE_MEMORY_MB,
        channels_last: bool = True,
        fold_bn: bool = True,
        compile: bool = False,
        backend: str = "torch",
        bn_stats: str = "image",
        stats_side: int = STATS_SIDE,
        postprocess: str = "auto",
        margin: int = MARGIN,
    ) -> None:
        from mgan.generator import Generator, load_release  # noqa: PLC0415
        from mgan.vgg import layer_scale  # noqa: PLC0415

        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if not (tile is None or tile == "auto" or (isinstance(tile, int) and tile >= 8)):
            raise InputError(f"tile must be 'auto', None or an integer >= 8, got {tile!r}")
        if bn_stats not in BN_STATS:
            raise InputError(f"bn_stats must be one of {', '.join(BN_STATS)}, got {bn_stats!r}")
        if not (isinstance(stats_side, int) and stats_side >= 64):
            raise InputError(f"stats_side must be an integer >= 64, got {stats_side!r}")
        if not (isinstance(margin, int) and not isinstance(margin, bool) and margin >= 0):
            raise InputError(f"margin must be an integer >= 0 (px), got {margin!r}")
        if not 0 < tile_memory_mb < math.inf:  # NaN fails every comparison: refused too
            raise InputError(f"tile memory must be a finite number > 0 MB, got {tile_memory_mb}")
        self.device = device if isinstance(device, torch.device) else cli.resolve_device(str(device))
        if precision == "auto":
            precision = prec.resolve(precision, self.device)
        if isinstance(model, Generator):
            G, self.extra = model, {}
        elif isinstance(model, nn.Module):
            raise InputError(f"model must be an mgan Generator or a release file, got {type(model).__name__}")
        else:
            path = Path(model)
            if not path.is_file() and path == DEFAULT_MODEL:
                raise InputError(
                    f"the bundled generator {path} is missing (no trained model shipped yet); "
                    "train one or pass --model FILE.safetensors"
                )
            G, self.extra = load_release(path)
        self.style_colour: tuple[Tensor, Tensor] | None = None  # (mean [3, 1], cov [3, 3]) of the painting
        if STYLE_COLOUR_KEY in self.extra:
            try:
                self.style_colour = colour.moments_from_json(self.extra[STYLE_COLOUR_KEY])
            except ValueError as exc:
                raise InputError(f"{model}: bad {STYLE_COLOUR_KEY} metadata: {exc}") from None
        self.postprocess = self.resolve_postprocess(postprocess)
        cfg = G.config
        if layer_scale(cfg.encoder_layer) != G.upscale:
            raise InputError(
                f"generator upsamples x{G.upscale} but its encoder layer {cfg.encoder_layer} is at 1/{layer_scale(cfg.encoder_layer)}"
            )
        self.config = cfg
        self.precision = precision
        self.tile = (tile + 7) // 8 * 8 if isinstance(tile, int) else tile
        self.tile_memory_mb = float(tile_memory_mb)
        self.scale = G.upscale
        # Tiles are exact only if the halo covers G's receptive field too; it depends on G's
        # layers (upsampling mode, kernel sizes), so it is computed, not assumed.
        self.halo = ENCODER_HALO + self.scale * G.halo_cells()
        self.margin = -(-margin // self.scale) * self.scale  # whole feature cells: the statistics leave them out
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        encoder = _encoder(cfg.encoder_layer, cfg.vgg_weights, cfg.pooling,
                           "bf16" if precision == "bf16" else "fp32", channels_last, str(self.device))
        self.memory_format = fmt
        self.stats_side = stats_side
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in G.net)
        self.bn_stats = bn_stats if has_bn else "running"  # nothing to measure in a G without BN
        if self.bn_stats == "image" and compile:
            raise InputError("--compile freezes G's weights into the graph; per-image BatchNorm statistics "
                             "change them per image: use --bn-stats running with --compile")
        # "image": G unfolded, its BN buffers rewritten per image (set_bn_stats); "running": folded
        g_net = fold_batchnorm(G.eval().net) if fold_bn and self.bn_stats == "running" else _copy_module(G.net)
        # Module.to takes memory_format with a dtype at runtime; torch's overloads only list it alone
        g_net = g_net.eval().requires_grad_(False).to(dtype=dtype, memory_format=fmt)  # type: ignore[call-overload]
        self.pipeline = _Pipeline(encoder, cfg.encoder_layer, g_net, autocast=precision == "bf16-autocast")
        self.pipeline.to(self.device).eval()
        self._run = _compiled(self.pipeline) if compile else self.pipeline
        # -- backend (mgan.backends): the same per-tile function in OpenVINO / ONNX Runtime, from an
        # fp32 export built on first use; the tiling below is untouched, so tiles stay exact
        from mgan import backends  # noqa: PLC0415

        self.backend, self.backend_reason = backends.check(backend, self.device, compile)
        if self.bn_stats == "image" and self.backend != "torch":
            if backend != "auto":
                raise InputError(f"--backend {backend} runs one exported G for every image; per-image BatchNorm "
                                 "statistics change G per image: add --bn-stats running, or use --backend torch")
            self.backend, self.backend_reason = "torch", "auto: --bn-stats image changes G per image (exports hold one)"
        self.dispatch = None
        if self.backend != "torch":

            def export_net() -> nn.Module:  # fp32 on the CPU: what the backends import (the layout is not exported,
                # so an fp32 channels_last decoder's cached encoder is shared rather than loaded again)
                enc = _encoder(cfg.encoder_layer, cfg.vgg_weights, cfg.pooling, "fp32", channels_last, "cpu")
                return _Pipeline(enc, cfg.encoder_layer, fold_batchnorm(G.eval().net), autocast=False)

            self.dispatch = backends.Dispatch(self.backend, self._run, export_net, precision, fmt)
            self._run = self.dispatch
        # -- end backend

    @torch.inference_mode()
    def set_image_stats(self, image: Tensor, tileable: bool = False, margin: int = 0) -> None:
        """Give G's BatchNorm layers the statistics of one image ``[1, 3, H, W]`` in ``[0, 1]``
        (sides multiples of 8), measured untiled on the image scaled (antialiased) to at most
        ``stats_side`` px on its longest side: :func:`set_bn_stats`. ``tileable``: of the
        periodic image (wrapped by the halo, which is then left out of the statistics).
        ``margin``: ``image`` carries this many px (a multiple of 8) of reflected context on
        each side (:attr:`margin`), also left out. A downscaled image is measured inside a
        margin of its own, reflected after scaling, so that its edges get as much context as
        an image decoded at full size."""
        h, w = image.shape[-2:]
        x = image.float()
        border = margin // self.scale
        if max(h, w) - 2 * margin > self.stats_side:  # the image's own side, not the margin's
            x = x[..., margin : h - margin, margin : w - margin]
            h, w = x.shape[-2:]
            f = self.stats_side / max(h, w)
            size = (max(8, round(h * f) // 8 * 8), max(8, round(w * f) // 8 * 8))
            x = nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            x = x.clamp(0, 1)
            if margin:
                m = fit_margin(margin, *size, self.scale)
                x = nn.functional.pad(x, (m, m, m, m), mode="reflect") if m else x
                border = m // self.scale
        halo = self.halo if tileable else 0
        if halo:
            x = nn.functional.pad(x, (halo, halo, halo, halo), mode="circular")
        feat = self.pipeline.features(x.to(self.device).contiguous(memory_format=self.memory_format))
        with torch.autocast(feat.device.type, dtype=torch.bfloat16, enabled=self.pipeline.autocast):
            set_bn_stats(self.pipeline.g_net, feat, border=halo // self.scale + border)

    def resolve_postprocess(self, postprocess: str) -> str:
        """``postprocess`` with ``"auto"`` resolved for this generator (``"match"`` where it carries
        its painting's colours, else ``"minmax"``); InputError for an unknown one, or for
        ``"match"`` without the colours."""
        if postprocess not in POSTPROCESS:
            raise InputError(f"postprocess must be one of {', '.join(POSTPROCESS)}, got {postprocess!r}")
        if postprocess == "auto":
            return "match" if self.style_colour is not None else "minmax"
        if postprocess == "match" and self.style_colour is None:
            raise InputError("postprocess 'match' needs the painting's colours, which this generator does not carry "
                             "(add them: python -m mgan.zoo colour MODEL STYLE_IMAGE); or use stretch, minmax, none")
        return postprocess

    # -- planning

    def tile_core(self, height: int, width: int, tileable: bool = False) -> int | None:
        """Tile core side in pixels for an ``height x width`` image, or ``None`` (one tile)."""
        if self.tile is None:
            return None
        if isinstance(self.tile, int):
            return self.tile
        budget_px = self.tile_memory_mb * 2**20 / BYTES_PER_PIXEL[self.precision]
        pad = 2 * self.halo if tileable else 0
        if (height + pad) * (width + pad) <= budget_px:
            return None
        side = int(math.sqrt(budget_px)) - 2 * self.halo
        return max(64, side // 8 * 8)

    def plan(self, height: int, width: int, tileable: bool = False) -> tuple[list[Span], list[Span]]:
        """``(row spans, column spans)`` of the tiles for an image of this size."""
        core = self.tile_core(height, width, tileable)
        return axis_spans(height, core, self.halo, tileable), axis_spans(width, core, self.halo, tileable)

    # -- decoding

    @torch.inference_mode()
    def decode(self, image: Tensor, tileable: bool = False, progress: bool = False,
               postprocess: str | None = None) -> Tensor:
        """Decode ``[N, 3, H, W]`` RGB in ``[0, 1]`` to ``[N, 3, H, W]`` float32 in ``[0, 1]`` (CPU),
        each image post-processed (measured on the whole image) as ``postprocess`` says, or as
        the decoder's own :attr:`postprocess` when it is None.

        Any ``H, W >= 8`` works: sides that are not multiples of 8 are padded by edge
        replication and cropped back. Unless tileable, each image is decoded inside
        :attr:`margin` px of its own reflection, cropped away (at most the largest multiple
        of 8 below its shorter side). ``tileable=True`` decodes as if the image were
        periodic (wrap-around), so the result tiles seamlessly; it needs sides that are
        multiples of 8.
        """
        if image.dim() != 4 or image.shape[1] != 3:
            raise InputError(f"decode expects [N, 3, H, W] RGB, got {tuple(image.shape)}")
        post = self.postprocess if postprocess is None else self.resolve_postprocess(postprocess)
        h0, w0 = image.shape[-2:]
        if min(h0, w0) < self.scale:
            raise InputError(f"image is too small to decode ({w0}x{h0}); each side must be at least {self.scale} px")
        if tileable and (h0 % self.scale or w0 % self.scale):
            raise InputError(f"a tileable decode needs sides that are multiples of {self.scale}, got {w0}x{h0}")
        if image.shape[0] == 0:  # an empty batch decodes to an empty batch
            return image.float().cpu()
        x = image.float()
        m = 0 if tileable else fit_margin(self.margin, h0, w0, self.scale)
        if m:  # reflection needs m < each side
            x = nn.functional.pad(x, (m, m, m, m), mode="reflect")
        ph, pw = (-h0) % self.scale, (-w0) % self.scale
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        H, W = x.shape[-2:]
        rows, cols = self.plan(H, W, tileable)
        if self.bn_stats == "running":
            out = run_tiled(self._run, x, rows, cols, self.device, self.memory_format, progress)
        else:  # G with each image's own BN statistics, then the same (tiled) decode
            outs = []
            for i in range(x.shape[0]):
                xi = x[i : i + 1]
                if len(rows) == len(cols) == 1 and not tileable and max(H, W) - 2 * m <= self.stats_side:
                    # one untiled pass: measuring the statistics layer by layer is the decode
                    xt = xi.to(self.device).contiguous(memory_format=self.memory_format)
                    feat = self.pipeline.features(xt)
                    with torch.autocast(feat.device.type, dtype=torch.bfloat16, enabled=self.pipeline.autocast):
                        y = set_bn_stats(self.pipeline.g_net, feat, through=True, border=m // self.scale)
                    assert y is not None
                    outs.append(self.pipeline.to_unit(y).to("cpu"))
                else:
                    self.set_image_stats(xi, tileable, margin=m)
                    outs.append(run_tiled(self._run, xi, rows, cols, self.device, self.memory_format, progress))
            out = outs[0] if len(outs) == 1 else torch.cat(outs)  # one image: not copied by cat
            del outs, xi  # only ``out`` is held through the post-process
        del x  # the padded input (4096^2: 200 MB), not needed for the post-process
        out = out[..., m : m + h0, m : m + w0] if (m or ph or pw) else out
        if post == "match":
            assert self.style_colour is not None
            return torch.cat([colour.match(o[None], *self.style_colour) for o in out])
        if post == "stretch":
            return colour.stretch(out)
        if post == "minmax":
            return colour.minmax(out)
        return out


# ----------------------------------------------------------------------------- inputs


def parse_size(text: str | None) -> tuple[int, int] | int | None:
    """``"1024"`` -> ``1024`` (longest side; square for noise); ``"1080x810"`` -> ``(1080, 810)`` (W, H)."""
    if text is None:
        return None
    t = text.strip().lower()
    try:
        if "x" in t:
            w, h = (int(v) for v in t.split("x"))
            if w < 8 or h < 8:
                raise ValueError
            return (w, h)
        v = int(t)
        if v < 8:
            raise ValueError
        return v
    except ValueError:
        raise InputError(f"--size must be N or WxH with sides >= 8, got {text!r}") from None


def target_size(w: int, h: int, size: tuple[int, int] | int | None) -> tuple[int, int]:
    """Output ``(W, H)`` for a ``w x h`` input: unchanged, longest side ``size``, or exactly ``WxH``."""
    if size is None:
        return w, h
    if isinstance(size, tuple):
        return size
    s = size / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def resize(x: Tensor, w: int, h: int) -> Tensor:
    """``[N, 3, H, W]`` -> ``[N, 3, h, w]`` (bicubic, antialiased when shrinking), clamped to ``[0, 1]``."""
    if x.shape[-2:] == (h, w):
        return x
    y = nn.functional.interpolate(x.float(), size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return y.clamp_(0, 1)


def blend_noise(photo: Tensor, noise_img: Tensor | None, weight: float) -> Tensor:
    """``(1 - weight) * photo + weight * noise``: the original demo's stylisation control.

    The original code added a low-frequency noise image times ``noise_weight`` to the
    photo before encoding; a convex blend keeps the input in ``[0, 1]`` and runs from
    the photo (0) to unguided noise synthesis (1).
    """
    if weight == 0 or noise_img is None:
        return photo
    return torch.lerp(photo.float(), noise_img.float(), float(weight))


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mgan.decode",
        description="Decode photos, folders, videos or noise with a trained MGAN generator (paper Sec. 4-5).",
        epilog="example: python -m mgan.decode --noise perlin --size 1024 --seed 3 --out texture.png",
    )
    src = p.add_argument_group("input (one of --input / --noise)")
    src.add_argument("--input", type=Path, help="an image, a folder of images, or a video file")
    src.add_argument("--noise", choices=("perlin", "brown"),
                     help="unguided synthesis from this noise; with --input, the noise blended by --noise-weight")
    src.add_argument("--noise-weight", type=float, default=0.0,
                     help="blend this much noise into the input before encoding (0 = photo, 1 = pure noise)")
    p.add_argument("--model", type=Path, default=None,
                   help=f"a released generator file (default: the bundled {DEFAULT_MODEL.stem}; see --style)")
    _add_zoo_and_control_args(p)
    p.add_argument("--out", type=Path,
                   help="output image / folder / video (default decode_out.png, decode_out/, decode_out.mp4)")
    p.add_argument("--size", help="N: longest side (square for noise; default 512 for noise, input size otherwise); WxH: exact")
    p.add_argument("--seed", type=int, default=0, help="noise seed: same seed, same texture")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=prec.CHOICES, default="auto",
                   help="bf16 weights and activations (fast where native) or fp32; " + prec.HELP)
    p.add_argument("--tileable", action="store_true",
                   help="seamlessly wrapping output (periodic noise, circular padding); sides must be multiples of 8")
    p.add_argument("--tile", default="auto", help="tile core side in px, 'auto' (by --tile-memory) or 'off'")
    p.add_argument("--tile-memory", type=float, default=DEFAULT_TILE_MEMORY_MB, help="working-memory budget per tile, MB")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (slow start, faster decode)")
    from mgan import backends  # noqa: PLC0415  (--backend: mgan.backends)

    p.add_argument("--backend", choices=backends.CHOICES, default="auto", help=backends.HELP)
    p.add_argument("--bn-stats", choices=BN_STATS, default="image",
                   help="G's BatchNorm statistics: each image's own, measured once per image on it at most "
                   f"{STATS_SIDE} px (the original's test-time mode, tiled = untiled), or the running ones of "
                   "training (one G for all images, as the openvino/onnxruntime backends need)")
    p.add_argument("--margin", type=int, default=MARGIN,
                   help=f"px of reflected context decoded around each image and cropped away, so its edges decode "
                        f"like its middle (rounded up to a multiple of 8, cut to fit small images, not used with "
                        f"--tileable; default {MARGIN}; 0: the plain decode of the original code)")
    p.add_argument("--postprocess", choices=POSTPROCESS, default="auto",
                   help="G's output: match: each image's RGB mean and covariance made the painting's; stretch: "
                   "its mean +-2 std to [0, 1], as MDAN's outputs; minmax: its range to [0, 1] (the original "
                   "demo); none: as is; auto (default): match where the model carries its painting's colours "
                   "(the bundled ones do), else minmax")
    n = p.add_argument_group("noise")
    n.add_argument("--octaves", type=int, default=6, help="Perlin octaves")
    n.add_argument("--persistence", type=float, default=0.5, help="Perlin amplitude ratio between octaves")
    n.add_argument("--noise-scale", type=float, default=None,
                   help="largest noise feature in px (default: Perlin, the bundled model's own measured scale, "
                        "128 for picasso, 64 for other generators; brown 256: docs/decoding.md)")
    n.add_argument("--grey", action="store_true", help="grey noise instead of colour")
    n.add_argument("--perlin-backend", choices=("torch", "noise"), default="torch",
                   help="torch: vectorised (fast); noise: the noise package's pnoise2 per pixel (slow)")
    p.add_argument("--save-noise", type=Path, help="also save the noise image that is decoded (noise mode)")
    p.add_argument("--max-pixels", type=int, default=None, help="raise the decompression-bomb limit of input images")
    p.add_argument("--dry-run", action="store_true", help="check inputs, model and output, print the plan, decode nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no precision line")
    return p


def _tile_arg(text: str) -> int | str | None:
    t = str(text).strip().lower()
    if t == "auto":
        return "auto"
    if t in ("off", "none", "0"):
        return None
    try:
        v = int(t)
    except ValueError:
        v = -1
    if v < 8:
        raise InputError(f"--tile must be 'auto', 'off' or a side >= 8 px, got {text!r}")
    return v


def _noise_options(args: argparse.Namespace, kind: str) -> dict:
    from mgan.noise import decode_scale  # noqa: PLC0415

    scale = args.noise_scale if args.noise_scale is not None else decode_scale(kind, args.model)
    if kind == "perlin":
        return {"octaves": args.octaves, "persistence": args.persistence, "scale": scale, "color": not args.grey,
                "tileable": args.tileable, "backend": args.perlin_backend}
    return {"scale": scale, "color": not args.grey}


def _make_noise(args: argparse.Namespace, kind: str, w: int, h: int) -> Tensor:
    from mgan.noise import make_noise  # noqa: PLC0415

    try:
        return make_noise(kind, h, w, seed=args.seed, **_noise_options(args, kind))
    except ValueError as exc:
        raise InputError(f"noise options: {exc}") from None


def _check_out(out: Path, kind: str) -> None:
    if kind == "image" and out.suffix.lower() not in IMAGE_OUT_EXTENSIONS:
        raise InputError(f"--out {out}: expected an image file name such as out.png")
    if kind == "video" and out.suffix.lower() not in VIDEO_OUT_FORMATS:
        raise InputError(f"--out {out}: expected a video file name ending in {', '.join(VIDEO_OUT_FORMATS)}")
    if kind == "folder":
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out}: expected a folder for a folder of inputs")
        io.check_writable(out)
    else:
        if out.is_dir():
            raise InputError(f"--out {out} is a folder; name an output file")
        io.check_writable(out.parent if str(out.parent) else Path("."))


def _validate(args: argparse.Namespace) -> None:
    if args.input is None and args.noise is None:
        raise InputError("give --input (image, folder or video) or --noise perlin|brown")
    if not 0 <= args.noise_weight <= 1:
        raise InputError(f"--noise-weight must be in [0, 1], got {args.noise_weight}")
    if args.octaves < 1 or not 0 < args.persistence <= 1:
        raise InputError("--octaves must be >= 1 and --persistence in (0, 1]")
    if args.noise_scale is not None and not args.noise_scale > 0:
        raise InputError(f"--noise-scale must be > 0, got {args.noise_scale}")
    if args.tile_memory <= 0:
        raise InputError(f"--tile-memory must be > 0, got {args.tile_memory}")
    if args.input is not None and not args.input.exists():
        raise InputError(f"input not found: {args.input}")


def _check_tileable_size(args: argparse.Namespace, w: int, h: int) -> None:
    if args.tileable and (w % 8 or h % 8):
        raise InputError(f"--tileable needs sides that are multiples of 8, got {w}x{h}")


def _check_target(args: argparse.Namespace, w: int, h: int, what: Path | str) -> None:
    """Refuse an output size ``w x h`` that cannot be decoded, naming the input (or option)
    ``what``: sides below 8 px, sides a tileable decode cannot wrap, or more pixels than
    the decompression-bomb guard allows an input (``--max-pixels``), since decoding
    holds several float copies of the image."""
    if min(w, h) < 8:
        raise InputError(f"{what}: the output would be {w}x{h} (--size {args.size}); each side must be at least 8 px")
    if args.tileable and (w % 8 or h % 8):
        raise InputError(f"{what}: --tileable needs sides that are multiples of 8, the output would be {w}x{h}")
    if w * h > io.max_pixels():
        raise InputError(f"{what}: the output would be {w}x{h} = {w * h} pixels, above the limit of "
                            f"{io.max_pixels()}; lower --size, or raise --max-pixels if memory allows")


def _check_no_clobber(args: argparse.Namespace, out: Path, files: list[Path], names: list[str]) -> None:
    """:func:`mgan.io.check_outputs` for this run: no output over an input, no two outputs one file."""
    inputs = [("--model", args.model)] + [("--input", p) for p in [args.input, *files] if p is not None]
    if args.mask is not None:
        inputs.append(("--mask", args.mask))
    outputs = [("--out", out)] + [("--out", out / name) for name in names]
    if args.save_noise is not None:
        outputs.append(("--save-noise", args.save_noise))
    io.check_outputs(outputs, inputs)


# -- model zoo and decode-time controls (mgan.zoo, mgan.controls) ---------------------------


def _add_zoo_and_control_args(p: argparse.ArgumentParser) -> None:
    z = p.add_argument_group("bundled models (mgan.zoo)")
    z.add_argument("--style", help="a bundled model by name, e.g. picasso (--list-models shows them)")
    z.add_argument("--list-models", action="store_true", help="print the bundled models (name, painter, size, licence)")
    c = p.add_argument_group("controls (need a photo: --input; see mgan/controls.py)")
    c.add_argument("--strength", type=float, default=None,
                   help="style strength a in [0, 1]: a * stylised + (1 - a) * photo (default 1)")
    c.add_argument("--preserve-colors", action="store_true",
                   help="keep the photo's colours: the output's luminance with the photo's chroma (YIQ)")
    c.add_argument("--mask", type=Path, help="greyscale image: stylise where white, keep the photo where black")


def _list_models() -> int:
    from mgan import zoo  # noqa: PLC0415

    lines = zoo.listing()
    print("\n".join(lines) if lines else f"no bundled models in {zoo.ASSETS}")
    return 0


def _model_arg(args: argparse.Namespace) -> Path:
    """The generator file: ``--model FILE``, ``--style NAME`` (bundled), or the default."""
    if args.style is not None and args.model is not None:
        raise InputError("give --style NAME (a bundled model) or --model FILE, not both")
    if args.style is not None:
        from mgan import zoo  # noqa: PLC0415

        return zoo.resolve(args.style)
    return args.model if args.model is not None else DEFAULT_MODEL


def _controls_arg(args: argparse.Namespace, mode: str) -> controls.Controls:
    """The :class:`mgan.controls.Controls` of the command line; the mask is read now, so a bad
    one is reported before any decoding."""
    wanted = [flag for flag, on in (("--strength", args.strength is not None),
                                    ("--preserve-colors", args.preserve_colors),
                                    ("--mask", args.mask is not None)) if on]
    if wanted and mode == "noise":
        raise InputError(f"{', '.join(wanted)} mix the output with a photo; give --input (noise decoding has none)")
    mask = controls.load_mask(args.mask) if args.mask is not None else None
    strength = 1.0 if args.strength is None else args.strength
    return controls.Controls(strength=strength, preserve_colors=args.preserve_colors, mask=mask)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 ok, 1 failed, 2 bad input, 130 interrupted (mgan.cli.run)."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _run(args), args=args, interrupted="interrupted; finished outputs are kept")


SHAPE_CACHE_LIMIT = 64  # distinct input sizes in a folder beyond which torch's conv caches are turned off


def _run(args: argparse.Namespace) -> int:
    if args.list_models:
        return _list_models()
    args.model = _model_arg(args)  # resolved once; everything below reads args.model
    _validate(args)
    io.set_max_pixels(args.max_pixels)
    size = parse_size(args.size)
    tile = _tile_arg(args.tile)
    if args.input is None:
        mode = "noise"
    elif args.input.is_dir():
        mode = "folder"
    elif is_video(args.input):
        mode = "video"
    else:
        mode = "image"
    default_out = {"noise": "decode_out.png", "image": "decode_out.png", "folder": "decode_out", "video": "decode_out.mp4"}
    out = args.out or Path(default_out[mode])
    _check_out(out, "image" if mode == "noise" else mode)
    if args.save_noise is not None:
        _check_out(args.save_noise, "image")
    files = io.list_images(args.input) if mode == "folder" else []
    names = io.output_names(files)  # distinct output names, decided before any work
    _check_no_clobber(args, out, files, names)
    shapes = set()
    for p in files or ([args.input] if mode == "image" else []):
        # headers only: a bad image, or one whose output size cannot be decoded, is
        # reported (by name) before any work starts
        w, h = target_size(*io.probe_image(p, min_side=8), size)
        _check_target(args, w, h, p)
        shapes.add((-(-w // 8), -(-h // 8)))
    if len(shapes) > SHAPE_CACHE_LIMIT:
        # torch's CPU conv caches (ideep's LRU and oneDNN's primitive cache, 1024 entries
        # each) hold ~13 entries per input size; past ~78 sizes they evict and re-create
        # on every image and RSS climbs (bench/memory.py, 500 photos of 294 sizes: +348 MB;
        # with these set here +224 MB; exactly flat, at ~25 ms per image, only when both
        # are set in the environment before Python starts: see the README).
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")
        os.environ.setdefault("LRU_CACHE_CAPACITY", "1")  # 0 crashes
    ctl = _controls_arg(args, mode)
    if mode == "noise":
        w, h = (size, size) if isinstance(size, int) else (size or (512, 512))
        _check_target(args, w, h, "--size")
    decoder = Decoder(args.model, device=args.device, precision=args.precision, tile=tile,
                      tile_memory_mb=args.tile_memory, compile=args.compile, backend=args.backend,
                      bn_stats=args.bn_stats, postprocess=args.postprocess, margin=args.margin)
    progress = not args.quiet
    if args.dry_run:
        what = {"noise": f"{args.noise} noise", "folder": f"{len(files)} images"}.get(mode, str(args.input))
        print(f"dry run: would decode {what} with {args.model} on {decoder.device} ({decoder.precision}, "
              f"backend {decoder.backend}) into {out}")
        return 0
    if mode == "noise":
        return _run_noise(args, decoder, out, w, h, progress)
    if mode == "video":
        return _run_video(args, decoder, out, size, progress, ctl)
    return _run_images(args, decoder, [args.input] if mode == "image" else files, out, mode, size, progress, ctl,
                       names)


def _announce(args: argparse.Namespace, decoder: Decoder, progress: bool) -> None:
    """The precision line, where the progress output starts: an input that fails before then
    gets its one error line alone; ``--quiet`` prints neither."""
    if progress:
        prec.announce(args.precision, decoder.device)
        if decoder.dispatch is None:  # else the backend's line comes with the first tile (auto measures then)
            print(f"backend: torch ({decoder.backend_reason})", file=sys.stderr)
        else:
            from mgan import backends  # noqa: PLC0415

            decoder.dispatch.log = backends.stderr_log


def _run_noise(args: argparse.Namespace, decoder: Decoder, out: Path, w: int, h: int, progress: bool) -> int:
    _announce(args, decoder, progress)
    t0 = time.perf_counter()
    x = _make_noise(args, args.noise, w, h)
    t1 = time.perf_counter()
    if args.save_noise is not None:
        io.save_image(x, args.save_noise)
    y = decoder.decode(x, tileable=args.tileable, progress=progress)
    t2 = time.perf_counter()
    io.save_image(y, out)
    print(f"wrote {out} ({w}x{h}, {args.noise} noise seed {args.seed}: noise {t1 - t0:.2f} s, decode {t2 - t1:.2f} s)")
    return 0


def _run_images(args: argparse.Namespace, decoder: Decoder, files: list[Path], out: Path, mode: str,
                size: tuple[int, int] | int | None, progress: bool, ctl: controls.Controls | None = None,
                names: list[str] | None = None) -> int:
    from tqdm import tqdm  # noqa: PLC0415

    names = names or io.output_names(files)
    written: set[Path] = set()
    noise: Tensor | None = None  # the last size's noise only (a folder of many sizes must not pile them up)
    _announce(args, decoder, progress)
    bar = tqdm(files, desc="decode", unit="img", file=sys.stderr, dynamic_ncols=True,
               disable=not progress or mode == "image")
    seconds = 0.0
    for p, name in zip(bar, names, strict=True):
        img = io.load_image(p, min_side=8)
        w, h = target_size(img.shape[-1], img.shape[-2], size)
        _check_tileable_size(args, w, h)
        img = photo = resize(img, w, h)  # the controls mix with the photo, not its noise blend
        if args.noise_weight > 0:
            if noise is None or noise.shape[-2:] != (h, w):
                noise = _make_noise(args, args.noise or "perlin", w, h)
            img = blend_noise(img, noise, args.noise_weight)
        t = time.perf_counter()
        y = decoder.decode(img, tileable=args.tileable, progress=progress and mode == "image")
        if ctl is not None:
            y = controls.apply(y, photo, ctl)
        seconds += time.perf_counter() - t
        target = out if mode == "image" else out / name
        io.save_image(y, target)
        written.add(target)
    if mode == "image":
        print(f"wrote {out} ({w}x{h}, decode {seconds:.2f} s)")
    else:
        print(f"wrote {len(written)} images to {out}/ (decode {seconds:.2f} s in all)")
    return 0


def _run_video(args: argparse.Namespace, decoder: Decoder, out: Path, size: tuple[int, int] | int | None,
               progress: bool, ctl: controls.Controls | None = None) -> int:
    from tqdm import tqdm  # noqa: PLC0415

    frames, fps, count = read_video(args.input)
    writer = VideoWriter(out, fps, frames.time_base)  # each frame keeps its input timestamp
    noise_img = None
    decode_s = 0.0
    t_start = time.perf_counter()
    ok = False
    _announce(args, decoder, progress)
    try:
        bar = tqdm(frames, total=count or None, desc="frames", unit="frame", file=sys.stderr,
                   dynamic_ncols=True, disable=not progress)
        for frame in bar:
            w, h = target_size(frame.shape[-1], frame.shape[-2], size)
            w, h = w // 2 * 2, h // 2 * 2  # yuv420p
            if writer.frames == 0:  # before anything is written: the frame size is known now
                _check_target(args, w, h, args.input)
            frame = photo = resize(frame, w, h)
            if args.noise_weight > 0:
                if noise_img is None or noise_img.shape[-2:] != (h, w):  # fixed noise across frames
                    noise_img = _make_noise(args, args.noise or "perlin", w, h)
                frame = blend_noise(frame, noise_img, args.noise_weight)
            t = time.perf_counter()
            y = decoder.decode(frame, tileable=args.tileable)
            if ctl is not None:
                y = controls.apply(y, photo, ctl)
            decode_s += time.perf_counter() - t
            writer.write(y, frames.pts)
        if writer.frames == 0:
            raise InputError(f"{args.input}: video has no frames")
        ok = True
    finally:
        frames.close()
        writer.close(ok=ok)
    total_s = time.perf_counter() - t_start
    n = writer.frames
    shortfall = frames.shortfall()
    if shortfall:  # the frames that decoded are written at their own times, so the rest stays in sync
        print(f"note: {args.input}: {shortfall}; wrote the {n} frames that decoded", file=sys.stderr)
    print(f"wrote {out} ({n} frames {w}x{h} at {float(fps):.3g} fps): decode {n / decode_s:.2f} frames/s, "
          f"{n / total_s:.2f} frames/s with video I/O")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
