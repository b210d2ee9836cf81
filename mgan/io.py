"""Image and checkpoint I/O with clear errors and atomic writes.

Images are float tensors ``[1, 3, H, W]`` in ``[0, 1]`` (RGB). Every failure a user
can cause (missing, corrupt, truncated, wrong mode, too small, too large) raises
:class:`InputError` with a one-line message; CLIs print it and exit non-zero.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import re
import sys
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


_NOTED: set[tuple[str, str]] = set()  # (file, mode) pairs already reported by _note_conversion


def _note_conversion(path: Path, mode: str, how: str = "") -> None:
    """One ``note:`` line on stderr per file and mode, so a conversion is never silent.

    A plain print, not ``warnings``: the note is for the user running the CLI, and a
    training run that loads the same photo in several stages should say it once.
    """
    key = (str(path), mode)
    if key in _NOTED:
        return
    _NOTED.add(key)
    print(f"note: {path}: converted {mode} to RGB{how}", file=sys.stderr)


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16-bit and float modes are rescaled, alpha dropped on white.

    Every conversion prints one ``note:`` line (:func:`_note_conversion`).
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        _note_conversion(path, mode, " (rescaled to 8 bits)")
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F":
            hi = max(float(arr.max()), 1e-8) if arr.max() > 1 else 1.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        _note_conversion(path, mode, " (alpha composited on white)")
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    _note_conversion(path, mode)
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn everything that can go wrong while opening or decoding ``path`` into one InputError."""
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"expected an image file, got a folder: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"{path}: image is larger than {Image.MAX_IMAGE_PIXELS} pixels (decompression-bomb guard); "
            "raise the limit with --max-pixels N if you trust it"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot decode image ({exc}); the file may be truncated or corrupt") from None


def _check_min_side(path: Path, w: int, h: int, min_side: int) -> None:
    if min(w, h) < max(min_side, 1):  # upscaling cannot invent the patches a too-small image lacks
        raise InputError(f"{path}: image is too small ({w}x{h}); each side must be at least {min_side} pixels")


def probe_image(path: str | os.PathLike, min_side: int = 1) -> tuple[int, int]:
    """Check an image from its header alone (no pixels decoded) and return its stored ``(W, H)``.

    For batches: finds a missing file, a non-image, a decompression bomb or an image
    smaller than ``min_side`` before any work starts, with :func:`load_image`'s messages.
    A truncated file is only found when :func:`load_image` decodes it.
    """
    path = Path(path)
    with _reading(path), Image.open(path) as img:
        w, h = img.size
    _check_min_side(path, w, h, min_side)
    return w, h


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
        min_side: the shortest side, before and after resizing, must be at least this, else
            InputError (a neural patch does not fit a smaller image, and upscaling adds none).
    """
    path = Path(path)
    with _reading(path):
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
            img = _to_rgb(img, path)
    w, h = img.size
    _check_min_side(path, w, h, min_side)
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the writer's PID is in the name, so remove_stale_temps can tell a killed writer's leftovers
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _blame(exc, path)
        raise
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            _blame(exc, path)
        raise


def _blame(exc: OSError, path: Path) -> None:
    """Name the file the user asked for (not our temp file, not "None") in a write error.

    ``write``/``fsync`` errors such as ENOSPC carry no file name, and ``mkstemp``'s
    carry the hidden temp name; :func:`mgan.cli.run` prints ``exc.filename``.
    """
    if exc.filename is None or Path(str(exc.filename)).name.startswith(f".{path.name}."):
        exc.filename = str(path)


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


def describe_load_error(exc: BaseException) -> str:
    """One short line saying why ``torch.load(..., weights_only=True)`` failed.

    torch's refusal of a pickle that names a function (code that would run on load) is a
    paragraph that suggests ``weights_only=False``; keep only what the file tried to load.
    """
    text = str(exc).strip()
    if "Weights only load failed" in text:
        detail = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
        return "refused by torch.load(weights_only=True)" + (f": {detail.rstrip('.')}" if detail else "")
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True``; any failure is one clear InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the file is refused or loaded anyway
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise InputError(f"{path}: not a valid mgan checkpoint ({describe_load_error(exc)})") from None
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


_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]{8}\.tmp$")  # atomic_write's temp files: .NAME.PID.XXXXXXXX.tmp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files that writers killed mid-:func:`atomic_write` left below ``folder``.

    A temp file is stale when the process named in it (``.NAME.PID.XXXXXXXX.tmp``) is no
    longer running on this machine; files of live writers (other ranks, other jobs) are
    left alone. Returns the files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in folder.rglob(".*.tmp"):
        m = _TEMP_NAME.match(p.name)
        if m and p.is_file() and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                gone.append(p)
    return gone
