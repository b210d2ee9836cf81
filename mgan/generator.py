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

Released generators are small ``safetensors`` files whose metadata holds the
generator's config (JSON) and a format tag, loadable without pickle.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import Tensor, nn

from mgan.discriminator import dcgan_init_

RELEASE_FORMAT = "mgan-generator-v1"


@dataclass
class GeneratorConfig:
    """Architecture of G; the defaults are the paper's."""

    in_channels: int = 512  # relu4_1
    channels: tuple[int, ...] = (512, 256, 128)  # widths of the conv and the two hidden FS-convs
    encoder_layer: str = "relu4_1"
    vgg_weights: str = "caffe"
    pooling: str = "max"


class Generator(nn.Module):
    """Decoder G: relu4_1 features ``[N, 512, h, w]`` -> image ``[N, 3, 8h, 8w]`` in ``[-1, 1]``.

    Args:
        config: widths; ``channels[0]`` is the first 3x3 conv, then one FS-conv per
            remaining width, then the final FS-conv to RGB (three x2 upsamplings).
    """

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        c = self.config.channels
        layers: list[nn.Module] = [
            nn.Conv2d(self.config.in_channels, c[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(c[0]),
            nn.ReLU(True),
        ]
        for cin, cout in zip(c[:-1], c[1:], strict=True):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(c[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.upscale = 2 ** len(c)
        dcgan_init_(self)

    def forward(self, feat: Tensor) -> Tensor:
        """``[N, C_in, h, w]`` -> ``[N, 3, h * 2^k, w * 2^k]`` in ``[-1, 1]`` (k = 3 by default)."""
        return self.net(feat)

    @staticmethod
    def to_image(y: Tensor) -> Tensor:
        """``[-1, 1]`` -> RGB ``[0, 1]``."""
        return (y.float() + 1) / 2


def save_release(G: Generator, path: str | os.PathLike, extra: dict | None = None, half: bool = True) -> Path:
    """Write G as a ``safetensors`` file (fp16 by default) with its config in the metadata.

    BatchNorm running statistics are included (``num_batches_tracked`` dropped).
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
    data = save(sd, metadata=meta)
    path = Path(path)
    with atomic_write(path) as f:
        f.write(data)
    return path


def load_release(path: str | os.PathLike) -> tuple[Generator, dict]:
    """Load a released generator; returns ``(G in eval mode, fp32, extra metadata)``.

    Raises :class:`mgan.io.InputError` on a missing, corrupt or foreign file.
    """
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.torch import load  # noqa: PLC0415

    from mgan.io import InputError  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise InputError(f"generator file not found: {path}")
    raw = path.read_bytes()
    try:
        sd = load(raw)
        from safetensors import safe_open  # noqa: PLC0415

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a safetensors generator ({str(exc).splitlines()[0][:160]})") from None
    if meta.get("format") != RELEASE_FORMAT:
        raise InputError(f"{path}: not an mgan generator (metadata format {meta.get('format')!r})")
    try:
        cfg = json.loads(meta["config"])
        cfg["channels"] = tuple(cfg["channels"])
        G = Generator(GeneratorConfig(**cfg))
        G.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
        missing = set(G.state_dict()) - set(sd) - {k for k in G.state_dict() if k.endswith("num_batches_tracked")}
        if missing:
            raise RuntimeError(f"missing {sorted(missing)[:2]}")
    except (KeyError, TypeError, json.JSONDecodeError, RuntimeError) as exc:
        raise InputError(f"{path}: generator does not match its config ({str(exc).splitlines()[0][:160]})") from None
    extra = json.loads(meta["extra"]) if "extra" in meta else {}
    return G.eval(), extra
