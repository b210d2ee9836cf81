"""Decode-time controls: style strength, colour preservation and masks (``mgan.decode``).

G decodes VGG-19 relu4_1 features into the style; it has no way to *reconstruct* a
photo, so a control that must give the photo back at one end of its range cannot live
in feature space (``G(a f(x) + (1 - a) f(x))`` is still fully stylised). Every control
here is therefore a per-pixel function of three images of the output's size: G's
output ``s``, the photo ``p`` (before any ``--noise-weight`` blend) and an optional
mask ``m``, applied in this order::

    y = p + a (s - p)                      strength a in [0, 1]   (a = 0: y = p exactly)
    y = p + (Y(y) - Y(p)) [1, 1, 1]^T      preserve colours: y's luma, p's chroma (YIQ)
    y = p + m (y - p)                      mask m in [0, 1]       (m = 0: y = p exactly)

and the result is clamped to ``[0, 1]``.

**Tiling.** Each output pixel depends only on the same pixel of ``s``, ``p`` and ``m``,
so the controls commute with any cut of the image into tiles: as the tiled decode
equals the untiled one (:mod:`mgan.decode`), so do the controlled results. They run
over row bands of :data:`BAND_ROWS` rows, in place, so a 4096^2 decode needs only a
band's worth of extra memory.

**Strength** mixes outputs, measured on ``tubingen.jpg`` at 256 px with the Picasso
model (relu4_1 content distance of :mod:`mgan.evaluate`, docs/models/picasso.md): it
falls monotonically as ``a`` falls and is 0 at ``a = 0``.

**Colour space for preserve-colours.** Gatys et al. 2016 ("Preserving color in neural
artistic style transfer", luminance-only transfer) keep the photo's colours by combining
the output's luminance with the photo's I and Q channels in YIQ. YIQ is linear, so the
recombination is exact and cheap, and a photo recombined with itself is itself (the
controls stay exact at ``a = 0``). Its luma ``Y = 0.299 R + 0.587 G + 0.114 B`` is that
of YUV and YCbCr (BT.601), whose chroma channels span the same plane (all weights sum
to zero), so those three spaces give the *same* result: the photo plus a grey offset
``Y(y) - Y(p)`` per pixel, which is also what ``mgan.gatys --preserve-colors`` (YUV)
does. Lab would separate lightness more perceptually, but it is non-linear and needs
sRGB linearisation; the paper's and neural-style's choice is kept. Where the offset
pushes a saturated pixel out of ``[0, 1]`` the clamp changes its chroma a little.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from mgan import io
from mgan.errors import InputError

BAND_ROWS = 256  # rows per in-place band: bounds the temporaries of a huge image
# BT.601 / NTSC luma (Y of YIQ, YUV and YCbCr alike).
LUMA = (0.299, 0.587, 0.114)
# Rows of RGB -> YIQ (FCC NTSC); the I and Q rows sum to zero, so YIQ -> RGB maps Y to grey.
RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.595716, -0.274453, -0.321263), (0.211456, -0.522591, 0.311135))


@dataclass(frozen=True)
class Controls:
    """What to do with G's output before it is saved.

    Args:
        strength: ``a`` in ``[0, 1]``: ``a * G + (1 - a) * photo`` (1 = full style).
        preserve_colors: keep the photo's chroma (YIQ I, Q) under the output's luma.
        mask: ``[1, 1, h, w]`` in ``[0, 1]`` at any size (resized to each output):
            1 stylises, 0 keeps the photo, values in between blend.
    """

    strength: float = 1.0
    preserve_colors: bool = False
    mask: Tensor | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.strength) <= 1.0:
            raise InputError(f"--strength must be in [0, 1], got {self.strength}")
        m = self.mask
        if m is not None and (m.dim() != 4 or m.shape[:2] != (1, 1)):
            raise InputError(f"a mask must be [1, 1, H, W], got {tuple(m.shape)}")

    @property
    def active(self) -> bool:
        """Whether the controls change anything (the default ones do not)."""
        return self.strength != 1.0 or self.preserve_colors or self.mask is not None


def rgb_to_yiq(x: Tensor) -> Tensor:
    """``[N, 3, H, W]`` RGB -> YIQ (Gatys et al. 2016's colour space)."""
    m = x.new_tensor(RGB_TO_YIQ)
    return torch.einsum("ij,njhw->nihw", m, x)


def yiq_to_rgb(x: Tensor) -> Tensor:
    """``[N, 3, H, W]`` YIQ -> RGB (the exact inverse of :func:`rgb_to_yiq`, not clamped)."""
    m = torch.linalg.inv(torch.tensor(RGB_TO_YIQ, dtype=torch.float64)).to(x)
    return torch.einsum("ij,njhw->nihw", m, x)


def luma(x: Tensor) -> Tensor:
    """``[N, 3, H, W]`` RGB -> ``[N, 1, H, W]`` BT.601 luma (YIQ's Y)."""
    w = x.new_tensor(LUMA).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def keep_chroma(result: Tensor, photo: Tensor) -> Tensor:
    """``result``'s luma with ``photo``'s chroma, both ``[N, 3, H, W]`` RGB of one size (not clamped).

    Equal to ``yiq_to_rgb([Y(result), I(photo), Q(photo)])``: YIQ -> RGB maps the Y
    axis to grey ``[1, 1, 1]``, so swapping Y adds the luma difference to every channel.
    """
    return photo + (luma(result) - luma(photo))


def resize_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """``[1, 1, h, w]`` -> ``[1, 1, height, width]`` in ``[0, 1]`` (bilinear; antialiased when
    shrinking, so a sharp mask gets soft edges of about one output pixel, never ringing)."""
    if mask.shape[-2:] == (height, width):
        return mask.float()
    shrink = height < mask.shape[-2] or width < mask.shape[-1]
    m = F.interpolate(mask.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)
    return m.clamp_(0, 1)


@torch.inference_mode()  # decoder outputs are inference tensors; updating them in place needs this mode
def apply(styled: Tensor, photo: Tensor | None, controls: Controls) -> Tensor:
    """Apply ``controls`` to G's output, in place; returns ``styled``.

    Args:
        styled: ``[N, 3, H, W]`` float in ``[0, 1]``, G's decode of the photo.
        photo: ``[N, 3, H, W]`` in ``[0, 1]``, the photo at the output's size (before
            any noise blend); may be ``None`` only when the controls are inactive.
        controls: strength, colour preservation and mask (resized to ``H x W``).
    """
    if not controls.active:
        return styled
    if photo is None:
        raise InputError("--strength, --preserve-colors and --mask need a photo (--input); noise has none")
    if photo.shape != styled.shape:
        raise InputError(f"photo {tuple(photo.shape)} and output {tuple(styled.shape)} differ in size")
    h, w = styled.shape[-2:]
    mask = None if controls.mask is None else resize_mask(controls.mask, h, w)
    a = float(controls.strength)
    for r0 in range(0, h, BAND_ROWS):
        rows = slice(r0, min(h, r0 + BAND_ROWS))
        p = photo[..., rows, :].float()
        y = torch.lerp(p, styled[..., rows, :].float(), a)
        if controls.preserve_colors:
            y = keep_chroma(y, p)
        if mask is not None:
            y = torch.lerp(p, y, mask[..., rows, :])
        styled[..., rows, :] = y.clamp_(0, 1)
    return styled


def load_mask(path: str | os.PathLike) -> Tensor:
    """Load a greyscale mask as ``[1, 1, H, W]`` float in ``[0, 1]`` (white = 1 = stylise).

    Colour masks are reduced to their luma; an alpha channel is composited on black (a
    transparent pixel keeps the photo); 16-bit and float images are rescaled. Raises
    :class:`mgan.errors.InputError` with one line for a missing, corrupt or non-image file.
    """
    path = Path(path)
    img: Image.Image  # the opened file, then the transposed/composited copies
    with io._reading(path):  # the same one-line errors as every image mgan reads
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F":
            hi = max(float(arr.max()), 1.0)
        arr = np.clip(arr / hi, 0.0, 1.0)
    else:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        arr = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    return torch.from_numpy(arr.astype(np.float32)).view(1, 1, *arr.shape)
