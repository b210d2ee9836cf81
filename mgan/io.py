"""Image and checkpoint I/O with clear errors and atomic writes.

Images are float tensors ``[1, 3, H, W]`` in ``[0, 1]`` (RGB). Every failure a user
can cause (missing, corrupt, truncated, wrong mode, too small, too large) raises
:class:`InputError` with a one-line message; CLIs print it and exit non-zero.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
DEFAULT_MAX_PIXELS = 100_000_000  # decompression-bomb guard; raise with --max-pixels


class InputError(ValueError):
    """Bad user input (file, folder, option value); the message is one line for the user."""


def set_max_pixels(limit: int | None) -> None:
    """Raise (or lower) the decompression-bomb guard; ``None`` restores the default."""
    Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS if limit is None else int(limit)


set_max_pixels(None)


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16-bit and float modes are rescaled, alpha dropped on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F":
            hi = max(float(arr.max()), 1e-8) if arr.max() > 1 else 1.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def load_image(
    path: str | os.PathLike,
    max_side: int | None = None,
    multiple: int = 1,
    min_side: int = 1,
) -> Tensor:
    """Load an image as ``[1, 3, H, W]`` RGB float in ``[0, 1]``.

    EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and alpha images are
    converted to RGB (alpha composited on white).

    Args:
        path: image file.
        max_side: if given, resize (Lanczos) so the longest side equals it.
        multiple: round both sides down to a multiple of this (e.g. 8 for VGG patches).
        min_side: the shortest side after resizing must be at least this, else InputError.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"expected an image file, got a folder: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)
                img.load()
                img = _to_rgb(img, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"{path}: image is larger than {Image.MAX_IMAGE_PIXELS} pixels (decompression-bomb guard); "
            "raise the limit with --max-pixels N if you trust it"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot decode image ({exc}); the file may be truncated or corrupt") from None
    w, h = img.size
    if max_side is not None:
        scale = max_side / max(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    if multiple > 1:
        w, h = w // multiple * multiple, h // multiple * multiple
    if min(w, h) < max(min_side, 1):
        raise InputError(
            f"{path}: image is too small ({img.size[0]}x{img.size[1]} -> {w}x{h}); "
            f"each side must be at least {max(min_side, multiple, 1)} pixels after resizing"
        )
    if (w, h) != img.size:
        img = img.resize((w, h), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8(x: Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` or ``[3, H, W]`` float in ``[0, 1]`` -> ``[H, W, 3]`` uint8."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got batch of {x.shape[0]}")
        x = x[0]
    return x.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Write to a temp file in the same folder, then ``os.replace`` it into place.

    A crash or error mid-write leaves any previous file untouched and no partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_image(x: Tensor, path: str | os.PathLike) -> Path:
    """Save ``[1, 3, H, W]`` (or ``[3, H, W]``) in ``[0, 1]`` atomically; format from the suffix."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image extension {path.suffix!r}")
    buf = _io.BytesIO()
    Image.fromarray(to_uint8(x), "RGB").save(buf, format=fmt)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    buf = _io.BytesIO()
    torch.save(obj, buf)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True``; any failure is one clear InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a valid mgan checkpoint ({first[:200]})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a valid mgan checkpoint (expected a dict, got {type(obj).__name__})")
    return obj


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files directly inside ``folder``; InputError if missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
    return files


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and make sure files can be written there, before work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mgan-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from None
    return folder
