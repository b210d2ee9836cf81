"""Looking inside VGG-19 (seed 004): feature inversion, activation maximisation, guided backprop.

* Feature inversion (Mahendran & Vedaldi, CVPR 2015): from noise, find

      x* = argmin_x ||Phi(x) - Phi_0||^2 / ||Phi_0||^2 + lambda R_{V^beta}(x)

  with the TV^beta prior ``R = sum ((x_{i,j+1} - x_ij)^2 + (x_{i+1,j} - x_ij)^2)^(beta/2)``
  (:func:`mgan.losses.tv_loss`), normalised by the pixel count so ``lambda`` does not
  depend on the image size. Lower layers reconstruct the photo almost exactly;
  relu4/5 keep layout and lose colour and detail.
* Gradient ascent (Simonyan et al. 2014; Yosinski et al. 2015): ``argmax_x a(x) -
  lambda ||x - 0.5||^2`` for the mean of one channel (or its centre neuron), with
  jitter (random shifts), periodic Gaussian blur and clipping as extra regularisers.
* Guided backprop (Springenberg et al. 2015): the gradient of a channel w.r.t. the
  pixels where every ReLU passes back only positive gradients of positive inputs.

CLI::

    python -m mgan.visualize invert --image tubingen.jpg --layer relu3_1 --out inv.png
    python -m mgan.visualize maximize --layer relu4_1 --channel 42 --out act.png
    python -m mgan.visualize saliency --image tubingen.jpg --layer relu5_1 --channel 7 --out sal.png
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from mgan import cli, io, losses, vgg
from mgan import precision as prec  # `precision` is a parameter name below
from mgan.cli import resolve_device
from mgan.config import check_choices
from mgan.errors import ConfigError
from mgan.optim import RunStats, optimize_image
from mgan.vgg import LAYER_INDEX, LAYER_NAMES, VGG19Encoder


def _check_channel(layer: str, channel: int) -> None:
    """ConfigError naming the key unless ``layer`` is a conv/relu layer and ``channel`` one of its channels."""
    vgg.check_feature_layer(layer, "layer")
    if not 0 <= channel < vgg.channels(layer):
        raise ConfigError(f"channel: {layer} has channels 0..{vgg.channels(layer) - 1}, got {channel}")


@dataclass
class InversionConfig:
    """Options of feature inversion (Mahendran & Vedaldi)."""

    layer: str = "relu3_1"
    tv_weight: float = 1e-3  # lambda on the per-pixel TV^beta prior (image in [0, 1])
    beta: float = 2.0  # TV exponent
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    iterations: int = 200
    lr: float = 1.0  # L-BFGS step scale; Adam lr in [0, 1] image units (try 0.05)
    noise_std: float = 0.1  # init: 0.5 + noise_std * N(0, 1)
    seed: int = 0
    precision: str = "auto"  # "auto": bf16 where native (mgan.precision), "fp32", "bf16"

    def validate(self) -> None:
        """Raise ConfigError for impossible values."""
        check_choices(self)
        vgg.check_feature_layer(self.layer, "layer")
        if self.tv_weight < 0 or self.beta <= 0 or self.noise_std < 0:
            raise ConfigError("tv_weight and noise_std must be >= 0, beta > 0")
        if self.iterations < 0 or self.lr <= 0:
            raise ConfigError("iterations must be >= 0 and lr > 0")
        prec.check(self.precision)


@dataclass
class MaximizeConfig:
    """Options of activation maximisation by regularised gradient ascent."""

    layer: str = "relu4_1"
    channel: int = 0
    neuron: bool = False  # maximise the centre neuron of the channel instead of its mean
    size: int = 128  # side of the synthesised image
    iterations: int = 200
    lr: float = 0.01  # mean absolute pixel change per step ([0, 1] units): the gradient is normalised
    l2_weight: float = 1e-3  # lambda ||x - 0.5||^2 (per pixel)
    blur_every: int = 4  # Gaussian blur every k steps (0: never)
    blur_sigma: float = 0.5
    jitter: int = 4  # random shift of up to +-jitter px before each step
    seed: int = 0
    precision: str = "auto"  # "auto": bf16 where native (mgan.precision), "fp32", "bf16"

    def validate(self) -> None:
        """Raise ConfigError for impossible values."""
        _check_channel(self.layer, self.channel)
        if self.size < 16 or self.iterations < 0 or self.lr <= 0:
            raise ConfigError("size must be >= 16, iterations >= 0, lr > 0")
        if self.l2_weight < 0 or self.blur_every < 0 or self.blur_sigma < 0 or self.jitter < 0:
            raise ConfigError("l2_weight, blur_every, blur_sigma and jitter must be >= 0")
        prec.check(self.precision)


def _encoder(layer: str, precision: str, encoder: VGG19Encoder | None, device: torch.device) -> VGG19Encoder:
    if encoder is not None:
        if layer not in encoder.layers:
            raise ValueError(f"the shared encoder has no tap {layer!r}")
        return encoder.to(device)
    return VGG19Encoder((layer,), precision=prec.resolve(precision, device)).to(device)


def _forward_to(enc: VGG19Encoder, x: Tensor, index: int, guided: bool = False) -> Tensor:
    """Run ``enc``'s layers ``0 .. index`` on ``x`` ``[N, 3, H, W]`` (any tap set), optionally with guided ReLUs."""
    if index >= len(enc.features):
        raise ValueError(f"the encoder stops before {LAYER_NAMES[index]}")
    h = enc.preprocess(x).to(enc.dtype).contiguous(memory_format=enc.memory_format)
    for module in enc.features[: index + 1]:
        h = _GuidedReLU.apply(h) if guided and isinstance(module, nn.ReLU) else module(h)
    return h


def invert(
    image: Tensor, config: InversionConfig, device: torch.device | str = "cpu",
    encoder: VGG19Encoder | None = None, progress: bool = False,
) -> tuple[Tensor, RunStats]:
    """Reconstruct ``image`` ``[1, 3, H, W]`` from its ``config.layer`` features alone.

    Returns the reconstruction ``[1, 3, H, W]`` in ``[0, 1]`` (CPU) and its :class:`RunStats`
    (``loss`` is the normalised feature error + prior per iteration).
    """
    config.validate()
    cfg, device = config, torch.device(device)
    enc = _encoder(cfg.layer, cfg.precision, encoder, device)
    image = image.to(device).float()
    with torch.no_grad():
        target = enc(image, [cfg.layer])[cfg.layer].float()
    norm = target.pow(2).sum().clamp_min(1e-12)
    npix = image.shape[-1] * image.shape[-2]
    gen = torch.Generator().manual_seed(cfg.seed)
    x = (0.5 + cfg.noise_std * torch.randn(image.shape, generator=gen)).to(device).requires_grad_(True)

    def loss_fn(x: Tensor) -> Tensor:
        feat = enc(x, [cfg.layer])[cfg.layer].float()
        loss = (feat - target).pow(2).sum() / norm
        if cfg.tv_weight > 0:
            loss = loss + cfg.tv_weight * losses.tv_loss(x, cfg.beta) / npix
        return loss

    t0 = time.perf_counter()
    hist = optimize_image(x, loss_fn, cfg.optimizer, cfg.iterations, cfg.lr, 100, progress, f"invert {cfg.layer}")
    return x.detach().clamp(0, 1).cpu(), RunStats(len(hist), time.perf_counter() - t0, hist)


def maximize(
    config: MaximizeConfig, device: torch.device | str = "cpu", encoder: VGG19Encoder | None = None,
    progress: bool = False,
) -> tuple[Tensor, RunStats]:
    """Synthesise an image that maximally excites ``config.channel`` of ``config.layer``.

    Each step: jitter (roll the image), ascend the normalised gradient of
    ``activation - l2_weight * mean (x - 0.5)^2`` (the activation taken before the ReLU), undo the roll, clip to ``[0, 1]``,
    and blur every ``blur_every`` steps. Returns ``[1, 3, size, size]`` and the
    activation per step (in ``RunStats.loss``).
    """
    config.validate()
    cfg, device = config, torch.device(device)
    enc = _encoder(cfg.layer, cfg.precision, encoder, device)
    # Ascend the pre-ReLU response (conv4_1 for relu4_1): from a grey start many channels are
    # all-zero after the ReLU, whose zero gradient would stall the ascent at the first step.
    pre = LAYER_INDEX[cfg.layer] - 1 if cfg.layer.startswith("relu") else LAYER_INDEX[cfg.layer]
    gen = torch.Generator().manual_seed(cfg.seed)
    x = (0.5 + 0.05 * torch.randn(1, 3, cfg.size, cfg.size, generator=gen)).to(device)
    hist: list[float] = []
    t0 = time.perf_counter()
    steps = range(cfg.iterations)
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        steps = tqdm(steps, desc=f"maximise {cfg.layer}:{cfg.channel}", leave=False, file=sys.stderr)
    for i in steps:
        dy, dx = (torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=gen).tolist() if cfg.jitter else (0, 0))
        xj = torch.roll(x, (dy, dx), (2, 3)).requires_grad_(True)
        fmap = _forward_to(enc, xj, pre).float()[0, cfg.channel]
        act = fmap[fmap.shape[0] // 2, fmap.shape[1] // 2] if cfg.neuron else fmap.mean()
        objective = act - cfg.l2_weight * (xj - 0.5).pow(2).sum() / xj[0, 0].numel()
        (grad,) = torch.autograd.grad(objective, [xj])
        with torch.no_grad():
            step = cfg.lr * grad / grad.abs().mean().clamp_min(1e-12)
            x = torch.roll(xj.detach() + step, (-dy, -dx), (2, 3)).clamp(0, 1)
            if cfg.blur_every and cfg.blur_sigma > 0 and (i + 1) % cfg.blur_every == 0:
                x = io.gaussian_blur(x, cfg.blur_sigma)
        hist.append(act.item())
    return x.cpu(), RunStats(len(hist), time.perf_counter() - t0, hist)


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients at positive inputs (Springenberg et al.)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        (x,) = ctx.saved_tensors
        return grad * ((x > 0) & (grad > 0)).to(grad.dtype)


def guided_backprop(
    image: Tensor, layer: str, channel: int, encoder: VGG19Encoder | None = None,
    device: torch.device | str = "cpu", neuron: bool = False,
) -> Tensor:
    """Guided-backprop saliency of one channel of ``layer`` for ``image`` ``[1, 3, H, W]``.

    The target is the channel's sum (or, with ``neuron``, its strongest position).
    Returns the pixel gradient ``[1, 3, H, W]`` (float32, CPU, signed).
    """
    _check_channel(layer, channel)
    device = torch.device(device)
    enc = _encoder(layer, "fp32", encoder, device)
    x = image.to(device).float().requires_grad_(True)
    fmap = _forward_to(enc, x, LAYER_INDEX[layer], guided=True).float()[0, channel]
    target = fmap.max() if neuron else fmap.sum()
    (grad,) = torch.autograd.grad(target, [x])
    return grad.detach().float().cpu()


def saliency_image(grad: Tensor) -> Tensor:
    """Signed gradient ``[1, 3, H, W]`` -> displayable ``[1, 3, H, W]`` in ``[0, 1]`` (0 -> grey)."""
    scale = grad.abs().flatten().quantile(0.995).clamp_min(1e-12) if grad.numel() < 16_000_000 else grad.abs().max()
    return (0.5 + 0.5 * grad / scale).clamp(0, 1)


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mgan.visualize",
        description="Visualise VGG-19: feature inversion, activation maximisation, guided-backprop saliency.",
        epilog="example: python -m mgan.visualize invert --image tubingen.jpg --layer relu3_1 --out inv.png",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    di, dm = InversionConfig(), MaximizeConfig()
    inv = sub.add_parser("invert", help="reconstruct a photo from one layer's features",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    inv.add_argument("--image", type=Path, required=True)
    inv.add_argument("--layer", default=di.layer)
    inv.add_argument("--size", type=int, default=256, help="resize the photo's longest side")
    inv.add_argument("--tv-weight", type=float, default=di.tv_weight)
    inv.add_argument("--beta", type=float, default=di.beta)
    inv.add_argument("--optimizer", choices=("lbfgs", "adam"), default=di.optimizer)
    inv.add_argument("--iterations", type=int, default=di.iterations)
    inv.add_argument("--lr", type=float, default=None, help="default: 1 (L-BFGS) or 0.05 (Adam)")
    mx = sub.add_parser("maximize", help="synthesise the image that excites one channel",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mx.add_argument("--layer", default=dm.layer)
    mx.add_argument("--channel", type=int, default=dm.channel)
    mx.add_argument("--neuron", action="store_true", help="the centre neuron instead of the channel mean")
    mx.add_argument("--size", type=int, default=dm.size)
    mx.add_argument("--iterations", type=int, default=dm.iterations)
    mx.add_argument("--lr", type=float, default=dm.lr)
    mx.add_argument("--l2-weight", type=float, default=dm.l2_weight)
    mx.add_argument("--blur-every", type=int, default=dm.blur_every)
    mx.add_argument("--blur-sigma", type=float, default=dm.blur_sigma)
    mx.add_argument("--jitter", type=int, default=dm.jitter)
    sal = sub.add_parser("saliency", help="guided-backprop saliency of a channel for a photo",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sal.add_argument("--image", type=Path, required=True)
    sal.add_argument("--layer", default="relu5_1")
    sal.add_argument("--channel", type=int, default=0)
    sal.add_argument("--neuron", action="store_true", help="the strongest position instead of the channel sum")
    sal.add_argument("--size", type=int, default=256, help="resize the photo's longest side")
    for sp in (inv, mx, sal):
        sp.add_argument("--out", type=Path, required=True, help="output image")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--device", default="auto")
        if sp is not sal:
            sp.add_argument("--precision", choices=prec.CHOICES, default="auto", help=prec.HELP)
        sp.add_argument("--max-pixels", type=int, default=None, help="raise the decompression-bomb limit")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 ok, 1 failed, 2 bad input, 130 interrupted (mgan.cli.run)."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _run(args), args=args, interrupted="interrupted")


def _run(args: argparse.Namespace) -> int:
    io.set_max_pixels(args.max_pixels)
    device = resolve_device(args.device)
    io.check_output_image(args.out)
    if getattr(args, "image", None) is not None:  # maximize reads no image
        io.check_outputs([("--out", args.out)], [("--image", args.image)])
    if args.command == "invert":
        lr = args.lr if args.lr is not None else (1.0 if args.optimizer == "lbfgs" else 0.05)
        cfg = InversionConfig(args.layer, args.tv_weight, args.beta, args.optimizer, args.iterations, lr,
                              seed=args.seed, precision=args.precision)
        cfg.validate()
        image = io.load_image(args.image, max_side=args.size, min_side=16)
        prec.announce(cfg.precision, device)  # after the input checks: a bad input gets one error line
        out, stats = invert(image, cfg, device, progress=True)
        msg = f"relative feature error + prior {stats.loss[-1] if stats.loss else float('nan'):.4g}"
    elif args.command == "maximize":
        mcfg = MaximizeConfig(args.layer, args.channel, args.neuron, args.size, args.iterations, args.lr,
                              args.l2_weight, args.blur_every, args.blur_sigma, args.jitter, args.seed,
                              args.precision)
        mcfg.validate()
        prec.announce(mcfg.precision, device)
        out, stats = maximize(mcfg, device, progress=True)
        msg = f"activation {stats.loss[-1] if stats.loss else float('nan'):.4g}"
    else:
        _check_channel(args.layer, args.channel)
        image = io.load_image(args.image, max_side=args.size, min_side=16)
        out = saliency_image(guided_backprop(image, args.layer, args.channel, None, device, args.neuron))
        msg = f"guided backprop of {args.layer}:{args.channel}"
    io.save_image(out, args.out)
    print(f"wrote {args.out} ({msg})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

