"""Image optimisation, shared by the iterative baselines (Gatys, CNNMRF, feature inversion).

These methods have no generator: the image itself is the variable. :func:`optimize_image`
runs L-BFGS or Adam on it against a loss, the way neural-style and CNNMRF do, and
:func:`coarse_to_fine` runs that on an image pyramid, each level starting from the
previous result upsampled (Gatys ``--levels``, CNNMRF's 3-level pyramid).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class RunStats:
    """Record of one optimisation (any of the image-optimisation baselines)."""

    iterations: int = 0
    seconds: float = 0.0
    loss: list[float] = field(default_factory=list)


def optimize_image(
    v: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    optimizer: str = "lbfgs",
    iterations: int = 100,
    lr: float = 1.0,
    history_size: int = 100,
    progress: bool = False,
    desc: str = "optimise",
    callback: Callable[[int, Tensor, float], None] | None = None,
) -> list[float]:
    """Minimise ``loss_fn(v)`` over the image tensor ``v`` in place; returns the loss per iteration.

    L-BFGS runs one iteration (one function evaluation, no line search) per step,
    like neural-style's ``optim.lbfgs`` with ``tolX = tolFun = -1``; its history is
    kept across steps. Adam takes one gradient step per iteration.

    Args:
        v: leaf tensor ``[1, 3, H, W]`` with ``requires_grad``; updated in place.
        loss_fn: ``v -> scalar``.
        optimizer: ``"lbfgs"`` or ``"adam"``.
        callback: ``callback(i, v, loss)`` after each iteration.

    Raises:
        FloatingPointError: the image became NaN or infinite (the CLI's one-line error).
    """
    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [v], lr=lr, max_iter=1, history_size=history_size, tolerance_grad=0.0, tolerance_change=0.0
        )
    else:
        opt = torch.optim.Adam([v], lr=lr)
    history: list[float] = []

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(v)
        loss.backward()
        # The encoder runs channels_last, so the gradient arrives in that layout; L-BFGS
        # flattens gradients with .view(-1), which needs the parameter's own layout.
        if v.grad is not None and not v.grad.is_contiguous():
            v.grad = v.grad.contiguous()
        history.append(loss.item())
        return loss

    from tqdm import tqdm  # noqa: PLC0415

    # disabled without progress: it then iterates the range and set_postfix does nothing
    bar = tqdm(range(iterations), desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, disable=not progress)
    for i in bar:
        # torch's stubs type the closure as returning float; LBFGS and Adam return (and use) its Tensor
        opt.step(closure)  # type: ignore[arg-type]
        if not torch.isfinite(v).all():
            raise FloatingPointError(f"{desc}: the image became non-finite at iteration {i}; lower the lr")
        bar.set_postfix(loss=f"{history[-1]:.4g}")
        if callback is not None:
            callback(i, v, history[-1])
    return history


@dataclass
class Level:
    """One level of a coarse-to-fine pyramid, as :func:`coarse_to_fine` hands it to the engine."""

    scale: float  # 1 / 2^(levels - 1 - k) for level k: the finest level is 1
    size: tuple[int, int]  # (H, W) of the image optimised at this level
    content: Tensor | None  # the photo resized to ``size`` ([1, 3, H, W] in [0, 1]), or None


def pyramid(full: tuple[int, int], levels: int, min_side: int = 1) -> list[tuple[float, tuple[int, int]]]:
    """``(scale, (H, W))`` of each level, coarsest first: level ``k`` is ``full`` times ``1 / 2^(levels-1-k)``.

    Sides are rounded and at least ``min_side``; the finest level is ``full`` itself.
    """
    out = []
    for level in range(levels):
        scale = 1.0 / 2 ** (levels - 1 - level)
        out.append((scale, (max(min_side, round(full[0] * scale)), max(min_side, round(full[1] * scale)))))
    return out


def coarse_to_fine(
    optimize: Callable[[Tensor, Level], list[float]],
    full: tuple[int, int],
    levels: int,
    content: Tensor | None = None,
    init: str = "content",
    noise_std: float = 0.25,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    min_side: int = 1,
    stats: RunStats | None = None,
) -> Tensor:
    """Optimise an image on a pyramid (:func:`pyramid`), each level starting from the previous result.

    The first level starts from the photo at that size (``init == "content"`` and a
    ``content`` given) or from ``0.5 + noise_std * N(0, 1)`` drawn on the CPU with
    ``generator``; every later level from the previous level's result, bicubically
    upsampled. The variable is the image in 0-255 units (the Caffe VGG's input scale,
    under which neural-style's and CNNMRF's step sizes were chosen).

    Args:
        optimize: ``optimize(v, level)`` minimises the leaf ``v`` ``[1, 3, H, W]`` (0-255)
            in place, e.g. with :func:`optimize_image`, and returns its loss per iteration.
        full: ``(H, W)`` of the finest level.
        content: ``[1, 3, H, W]`` photo in ``[0, 1]`` on ``device`` (the finest level's size),
            shrunk per level (bicubic, antialiased) into :attr:`Level.content`; or None.
        stats: when given, each level's losses and iterations are added to it.

    Returns:
        ``[1, 3, H, W]`` in ``[0, 1]`` on ``device``.
    """
    full = (int(full[0]), int(full[1]))
    x: Tensor | None = None
    for scale, hw in pyramid(full, levels, min_side):
        c_l = None
        if content is not None:
            c_l = content if hw == full else F.interpolate(
                content, size=hw, mode="bicubic", align_corners=False, antialias=scale < 1).clamp(0, 1)
        if x is not None:
            x0 = F.interpolate(x, size=hw, mode="bicubic", align_corners=False)
        elif c_l is not None and init == "content":
            x0 = c_l
        else:
            x0 = (0.5 + noise_std * torch.randn(1, 3, *hw, generator=generator)).to(device)
        v = (x0 * 255.0).detach().clone().requires_grad_(True)
        hist = optimize(v, Level(scale, hw, c_l))
        if stats is not None:
            stats.loss.extend(hist)
            stats.iterations += len(hist)
        x = (v.detach() / 255.0).clamp(0, 1)
    if x is None:
        raise ValueError(f"levels must be >= 1, got {levels}")
    return x
