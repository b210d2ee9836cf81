"""MGAN's feed-forward generator G and its release format (paper Sec. 3.2, Fig. 2, blue blocks).

G decodes VGG-19 relu4_1 features (``[N, 512, H/8, W/8]``) to an RGB image
``[N, 3, H, W]``: "an ordinary convolution followed by a cascade of fractional-strided
convolutions". Layers, as in the original code (nf = 64):

    conv 3x3 512->512, BN, ReLU
    FS-conv 4x4/2 512->256, BN, ReLU
    FS-conv 4x4/2 256->128, BN, ReLU
    FS-conv 4x4/2 128->3, Tanh

It is fully convolutional, so it decodes any size. Outputs in ``[-1, 1]`` map to
RGB ``[0, 1]`` via :meth:`Generator.to_image`.

Upsampling (``GeneratorConfig.upsample``): ``"deconv"`` is the paper's fractional-strided
4x4/2 convolution above. Each of its four output phases (even/odd row x column) has its
own 2x2 sub-kernel, so a constant input gives a 2-periodic output unless training
happens to equalise the four sub-kernels' sums; three stacked give the 8 px checkerboard
seen in decodes (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
``"resize"`` replaces every FS-conv by a nearest-neighbour x2 upsample and a 3x3 conv
with the same widths, BN, ReLU and Tanh (Odena et al.'s resize-convolution): every
output phase then sums the same nine weights, so a flat input decodes flat whatever the
weights. Nearest rather than bilinear: Odena et al. report their best results with it,
and it keeps G's receptive field (:meth:`Generator.halo_cells`) at the deconv's 2 cells,
so decode's tiling halo is unchanged.

Released generators are small ``safetensors`` files whose metadata holds the
generator's config (JSON) and a format tag, loadable without pickle.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from mgan.config import check_choices, from_dict
from mgan.errors import ConfigError, InputError, one_line
from mgan.layers import dcgan_init_

RELEASE_FORMAT = "mgan-generator-v1"
MAX_WIDTH = 4096  # channels of one layer of G (the paper's widest is 512)
MAX_UPSAMPLINGS = 4  # x2 steps of G (relu1_x..relu5_x are at 1/1..1/16)


@dataclass
class GeneratorConfig:
    """Architecture of G; the defaults are the paper's."""

    in_channels: int = 512  # relu4_1
    channels: tuple[int, ...] = (512, 256, 128)  # widths of the conv and the two hidden FS-convs
    encoder_layer: str = "relu4_1"
    vgg_weights: str = "caffe"
    pooling: Literal["max", "avg"] = "max"
    # x2 upsampling: the paper's fractional-strided 4x4/2 conv, or nearest x2 then 3x3 conv.
    # Releases written before this key existed load as "deconv" (the default).
    upsample: Literal["deconv", "resize"] = "deconv"
    # Residual blocks after the first conv, at the input's resolution (not in the paper; 0: the
    # paper's G). Each widens G's receptive field by 2 cells a side (paper's G: 2): G then paints
    # planes larger than 4x4 relu4_1 cells from noise (docs/training.md, "Residual blocks").
    blocks: int = 0
    # The blocks' inner width (the branch's first conv's outputs; null: channels[0]). Below
    # channels[0] a block costs width / channels[0] of the weights, the same receptive field.
    block_width: int | None = None

    def validate(self) -> None:
        """ConfigError naming the key for a config no G can be built or run from.

        Checked before anything is allocated (a release's metadata is untrusted input):
        a VGG-19 conv/relu encoder layer whose channels are ``in_channels``, one to
        :data:`MAX_UPSAMPLINGS` widths in ``[1, MAX_WIDTH]`` giving the layer's upsampling.
        """
        from mgan import vgg  # noqa: PLC0415

        check_choices(self)
        layer = vgg.check_feature_layer(self.encoder_layer, "encoder_layer")
        if not 1 <= len(self.channels) <= MAX_UPSAMPLINGS or not all(1 <= c <= MAX_WIDTH for c in self.channels):
            raise ConfigError(f"channels: must be 1 to {MAX_UPSAMPLINGS} widths in [1, {MAX_WIDTH}], "
                              f"got {list(self.channels)[:8]}")
        if vgg.layer_scale(layer) != 2 ** len(self.channels):
            raise ConfigError(f"channels: {len(self.channels)} widths give x{2 ** len(self.channels)} upsampling "
                              f"but {layer} is at 1/{vgg.layer_scale(layer)}")
        if not 0 <= self.blocks <= MAX_BLOCKS:
            raise ConfigError(f"blocks: must be 0 to {MAX_BLOCKS}, got {self.blocks}")
        if self.block_width is not None and not 1 <= self.block_width <= MAX_WIDTH:
            raise ConfigError(f"block_width: must be in [1, {MAX_WIDTH}] or null, got {self.block_width}")
        width = vgg.channels(layer)
        if self.in_channels != width:
            raise ConfigError(f"in_channels: {layer} has {width} channels, got {self.in_channels}")


UPSAMPLE_MODES = ("deconv", "resize")
MAX_BLOCKS = 8


class ResidualBlock(nn.Module):
    """``x + BN(conv(ReLU(BN(conv(x)))))``, ``[N, C, h, w]`` -> ``[N, C, h, w]`` (3x3 convs).

    The last BN's scale starts at zero (Goyal et al. 2017), so a G with blocks starts as the
    same G without them, and every conv is followed by BN: its scale does not matter, so G's
    lr (0.02, the original's) suits the blocks as it suits the rest of G (with the branch's
    last conv zeroed instead, Adam at 0.02 wrecked a trained G within 10 steps).
    """

    def __init__(self, channels: int, width: int | None = None) -> None:
        super().__init__()
        w = width or channels  # the branch's inner width
        self.branch = nn.Sequential(
            nn.Conv2d(channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True),
            nn.Conv2d(w, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
        )

    def zero_(self) -> None:
        """Make the block the identity (its last BN's scale zero)."""
        with torch.no_grad():
            self.branch[-1].weight.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def _padding(m: nn.Conv2d | nn.ConvTranspose2d) -> int:
    """The first side's padding of a conv layer (G's are square) as pixels."""
    assert not isinstance(m.padding, str)  # "same"/"valid": G never builds one
    return m.padding[0]


class Generator(nn.Module):
    """Decoder G: relu4_1 features ``[N, 512, h, w]`` -> image ``[N, 3, 8h, 8w]`` in ``[-1, 1]``.

    Args:
        config: widths; ``channels[0]`` is the first 3x3 conv, then one x2 upsampling
            layer per remaining width, then the final one to RGB (three x2 upsamplings),
            each a FS-conv (``upsample="deconv"``) or nearest x2 + 3x3 conv (``"resize"``).
    """

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        if self.config.upsample not in UPSAMPLE_MODES:
            raise ConfigError(f"model.upsample: must be one of {list(UPSAMPLE_MODES)}, got {self.config.upsample!r}")
        c = self.config.channels
        layers: list[nn.Module] = [
            nn.Conv2d(self.config.in_channels, c[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(c[0]),
            nn.ReLU(True),
            # none: the paper's G, its layer names unchanged
            *(ResidualBlock(c[0], self.config.block_width) for _ in range(self.config.blocks)),
        ]
        for cin, cout in zip(c[:-1], c[1:], strict=True):
            layers += [*self._up(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [*self._up(c[-1], 3), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.upscale = 2 ** len(c)
        dcgan_init_(self)
        for m in self.net:
            if isinstance(m, ResidualBlock):
                m.zero_()

    def _up(self, cin: int, cout: int) -> list[nn.Module]:
        """One x2 upsampling conv ``[N, cin, h, w]`` -> ``[N, cout, 2h, 2w]`` (no BN or activation).

        The deconv list has the same modules in the same order as before ``upsample``
        existed, so its parameter names (``net.3.weight`` ...) and seeded initialisation
        are unchanged and old releases load bit for bit.
        """
        if self.config.upsample == "deconv":
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)]
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=False)]

    def halo_cells(self) -> int:
        """Receptive-field radius of G in input cells: an output pixel in cell ``i`` reads input
        cells ``i - r ... i + r`` only (``r`` = 2 for both upsampling modes of the paper's G, + 2 a
        residual block).

        Computed exactly by walking the layers backwards from each of the ``upscale``
        output phases of one cell with the index interval every layer reads; decode's
        tiling halo (:mod:`mgan.tiling`) is built from it.
        """
        radius = 0
        for phase in range(self.upscale):
            lo, hi = _reads(self.net, phase, phase)
            radius = max(radius, -lo, hi)
        return radius

    def forward(self, feat: Tensor) -> Tensor:
        """``[N, C_in, h, w]`` -> ``[N, 3, h * 2^k, w * 2^k]`` in ``[-1, 1]`` (k = 3 by default)."""
        return self.net(feat)

    @staticmethod
    def to_image(y: Tensor) -> Tensor:
        """``[-1, 1]`` -> RGB ``[0, 1]``."""
        return (y.float() + 1) / 2


def _reads(layers: nn.Sequential, lo: int, hi: int) -> tuple[int, int]:
    """The input pixel interval that ``layers`` read for their output pixels ``lo ... hi``."""
    for m in reversed(layers):
        if isinstance(m, nn.ConvTranspose2d):  # out o = s*i - p + k, k < K
            (k,), (s,), p = m.kernel_size[:1], m.stride[:1], _padding(m)
            lo, hi = -((-(lo + p - k + 1)) // s), (hi + p) // s
        elif isinstance(m, nn.Conv2d):  # out o reads in o*s - p + k
            (k,), (s,), p, (d,) = m.kernel_size[:1], m.stride[:1], _padding(m), m.dilation[:1]
            lo, hi = lo * s - p, hi * s - p + d * (k - 1)
        elif isinstance(m, nn.Upsample):
            if m.mode != "nearest" or m.scale_factor != 2:
                raise ValueError(f"halo_cells: unsupported upsampling {m}")
            lo, hi = lo // 2, hi // 2
        elif isinstance(m, ResidualBlock):  # x + branch(x): the union of both reads
            blo, bhi = _reads(m.branch, lo, hi)
            lo, hi = min(lo, blo), max(hi, bhi)
        elif not isinstance(m, (nn.BatchNorm2d, nn.ReLU, nn.Tanh)):
            raise ValueError(f"halo_cells: unsupported layer {type(m).__name__}")
    return lo, hi


def save_release(G: Generator, path: str | os.PathLike, extra: dict | None = None, half: bool = True,
                 card: dict | None = None) -> Path:
    """Write G as a ``safetensors`` file (fp16 by default) with its config in the metadata.

    BatchNorm running statistics are included (``num_batches_tracked`` dropped).
    ``card`` is the model card (:mod:`mgan.zoo`), stored as JSON under ``"card"``.
    """
    from safetensors.torch import save  # noqa: PLC0415

    from mgan.io import atomic_write  # noqa: PLC0415

    sd = {
        k: (v.half() if half and v.is_floating_point() else v).contiguous()
        for k, v in G.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    meta = {"format": RELEASE_FORMAT, "config": json.dumps(asdict(G.config))}
    if extra:
        meta["extra"] = json.dumps(extra)
    if card:
        meta["card"] = json.dumps(card)
    data = save(sd, metadata=meta)
    path = Path(path)
    with atomic_write(path) as f:
        f.write(data)
    return path


def load_release(path: str | os.PathLike) -> tuple[Generator, dict]:
    """Load a released generator; returns ``(G in eval mode, fp32, extra metadata)``.

    Raises :class:`mgan.errors.InputError` on a missing, corrupt or foreign file.
    """
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.torch import load  # noqa: PLC0415

    from mgan.io import check_regular_file  # noqa: PLC0415

    path = check_regular_file(path, "generator file")
    raw = path.read_bytes()
    try:
        sd = load(raw)
        from safetensors import safe_open  # noqa: PLC0415

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a safetensors generator ({one_line(exc)[:160]})") from None
    if meta.get("format") != RELEASE_FORMAT:
        raise InputError(f"{path}: not an mgan generator (metadata format {meta.get('format')!r})")
    try:
        # types, layer names and widths (GeneratorConfig.validate) before anything is built
        cfg = from_dict(GeneratorConfig, json.loads(meta["config"]), prefix="config.")
        with torch.device("meta"):  # the shapes the config implies, without allocating them
            want = {k: tuple(v.shape) for k, v in Generator(cfg).state_dict().items()
                    if not k.endswith("num_batches_tracked")}
        missing = sorted(set(want) - set(sd))
        if missing:
            raise RuntimeError(f"missing {missing[:2]}")
        wrong = next((k for k in want if tuple(sd[k].shape) != want[k]), None)
        if wrong is not None:
            raise RuntimeError(f"{wrong} is {list(sd[wrong].shape)}, the config makes it {list(want[wrong])}")
        extra = json.loads(meta["extra"]) if "extra" in meta else {}
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # ValueError: bad JSON or config value
        raise InputError(f"{path}: generator does not match its config ({one_line(exc)[:160]})") from None
    broken = next((k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if broken is not None:  # it would decode every image to black
        raise InputError(f"{path}: weight {broken} holds NaN or infinite values; the generator is broken")
    G = Generator(cfg)
    G.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    return G.eval(), extra
