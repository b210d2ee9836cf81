"""Image and checkpoint I/O with clear errors and atomic writes.

Images are float tensors ``[1, 3, H, W]`` in ``[0, 1]`` (RGB). Every failure a user
can cause (missing, corrupt, truncated, wrong mode, too small, too large) raises
:class:`~mgan.errors.InputError` (re-exported here) with a one-line message; CLIs print
it and exit non-zero. The few operations on such tensors that several engines share
(resizing to a longest side, Gaussian blur, quantising to 8 bits) live here too, next to
:func:`load_image`'s own resizing.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import re
import stat
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from mgan.errors import InputError, one_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
# what an output image may be called: full-colour formats (a GIF would be quantised to 256
# colours, a PGM is grey)
IMAGE_OUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 100_000_000  # decompression-bomb guard; raise with --max-pixels
TEMP_MARKER = "mgan-tmp-"  # in every atomic_write temp file name, and in no name mgan did not write


def set_max_pixels(limit: int | None) -> None:
    """Raise (or lower) the decompression-bomb guard; ``None`` restores the default."""
    Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS if limit is None else int(limit)


set_max_pixels(None)


def max_pixels() -> int:
    """The decompression-bomb guard now in force (pixels); CLIs also bound their outputs by it."""
    return int(Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_PIXELS)


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


def _value_range(arr: np.ndarray, mode: str, path: Path) -> tuple[float, float, bool]:
    """``(lo, hi, widened)``: the range that maps to black..white for a 16/32-bit integer or float image.

    The mode's nominal range, widened to include every value the file holds: ``[0, 1]``
    for float (``F``), ``[0, 65535]`` for 16-bit, and ``[0, 255]`` or ``[0, 65535]`` for
    32-bit integer (``I``, which Pillow also uses for 8- and 16-bit data) by its largest
    value. So ordinary files keep their absolute levels (a dark 16-bit photo stays dark),
    and signed or wider data (``[-1, 1]`` floats, int32 counts) is mapped linearly by
    its real extent instead of being clipped into black or white (``widened``: the
    nominal range did not hold every value).
    """
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: {mode} image holds NaN or infinite pixel values")
    amin, amax = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if mode == "F":
        nominal = 1.0
    elif mode.startswith("I;16") or amax > 255:
        nominal = 65535.0
    else:
        nominal = 255.0
    lo, hi = min(0.0, amin), max(nominal, amax)
    return lo, hi, (lo, hi) != (0.0, nominal)


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16/32-bit and float modes are rescaled, alpha dropped on white.

    Every conversion prints one ``note:`` line (:func:`_note_conversion`).
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi, widened = _value_range(arr, mode, path)
        how = f" (rescaled from its value range [{lo:g}, {hi:g}] to 8 bits)" if widened else " (rescaled to 8 bits)"
        _note_conversion(path, mode, how)
        arr = np.clip((arr - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        _note_conversion(path, mode, " (alpha composited on white)")
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    _note_conversion(path, mode)
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def check_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """InputError unless ``path`` is an existing regular file (symlinks followed); returns it.

    Opening a FIFO blocks until something writes to it, and a device can be endless:
    mgan reads from regular files only, and says so in one line instead of hanging.
    """
    path = Path(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"expected {_article(what)} file, got a folder: {path}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file (a pipe, socket or device); give a file")
    return path


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn everything that can go wrong while opening or decoding ``path`` into one InputError."""
    check_regular_file(path, "image")
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
    except InputError:  # already one line naming the file (a ValueError, not to be wrapped below)
        raise
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
    img: Image.Image  # the opened file, then the transposed/converted copies
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


def quantize(x: Tensor) -> Tensor:
    """Float in ``[0, 1]`` -> uint8 tensor of the same shape (clamped, rounded half to even), on ``x``'s device."""
    return x.clamp(0, 1).mul(255).round_().to(torch.uint8)


def to_uint8(x: Tensor) -> np.ndarray:
    """One image ``[1, 3, H, W]`` or ``[3, H, W]`` float in ``[0, 1]`` -> ``[H, W, 3]`` uint8 array (for PIL).

    :func:`quantize` of the image as float, moved to the CPU in height-width-channel order.
    """
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got batch of {x.shape[0]}")
        x = x[0]
    return quantize(x.detach().float()).permute(1, 2, 0).cpu().numpy()


def resize_longest(x: Tensor, side: int, multiple: int = 1) -> Tensor:
    """Resize ``[N, C, H, W]`` in ``[0, 1]`` so its longest side is ``side`` (both sides rounded down to ``multiple``).

    Bicubic, antialiased when shrinking, clamped to ``[0, 1]``; ``x`` itself when the size
    is already right. The tensor counterpart of :func:`load_image`'s ``max_side``.
    """
    h, w = x.shape[-2:]
    s = side / max(h, w)
    nh, nw = max(multiple, round(h * s) // multiple * multiple), max(multiple, round(w * s) // multiple * multiple)
    if (nh, nw) == (h, w):
        return x
    return F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=s < 1).clamp(0, 1)


def resize_to_height(x: Tensor, h: int) -> Tensor:
    """``[N, C, H, W]`` resized (bilinear, antialiased) to height ``h``, aspect kept, clamped to
    ``[0, 1]``: the cells of a figure row."""
    w = max(1, round(x.shape[-1] * h / x.shape[-2]))
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def find_image(folder: Path, stem: str) -> Path | None:
    """The image ``<stem><ext>`` in ``folder`` (``ext`` one of :data:`IMAGE_EXTENSIONS`, in that
    order), or None: an output written for a photo of that stem."""
    for ext in IMAGE_EXTENSIONS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def gaussian_blur(x: Tensor, sigma: float, radius: int | None = None) -> Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` with reflection padding (same size out).

    Args:
        sigma: standard deviation in pixels (> 0).
        radius: the kernel has ``2 * radius + 1`` taps; default ``max(1, int(3 * sigma + 0.5))``.
    """
    r = max(1, int(3 * sigma + 0.5)) if radius is None else radius
    k = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(k**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Write to a temp file in the same folder, then ``os.replace`` it into place.

    A crash or error mid-write leaves any previous file untouched and no partial file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the marker and the writer's PID are in the name, so remove_stale_temps can tell a
        # killed mgan writer's leftovers from anyone else's files
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_MARKER}{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _blame(exc, path)
        raise
    try:
        with os.fdopen(fd, mode) as f:
            # mkstemp creates 0600; give what open() would: the old file's mode, else
            # 0666 & ~umask (file systems without modes, e.g. vfat, refuse: keep theirs)
            with contextlib.suppress(OSError):
                os.fchmod(f.fileno(), _new_file_mode(path))
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


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` sets as it reads)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """Permission bits for a file written to ``path``: an existing file keeps its own, a new
    one gets ``0666 & ~umask`` as a plain ``open(path, "w")`` would give it."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


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
    check_finite_image(x, path)
    buf = _io.BytesIO()
    Image.fromarray(to_uint8(x), "RGB").save(buf, format=fmt)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def check_finite_image(x: Tensor, path: str | os.PathLike) -> None:
    """FloatingPointError if ``x`` holds NaN or inf: clamped and rounded it would be written as
    a plausible black image (NaN weights, a diverged optimisation), so nothing is written."""
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError(f"{path}: the result holds NaN or infinite values (diverged, or NaN/inf "
                                 "weights or options); nothing written")


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
    first = one_line(exc) if text else ""
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True``; any failure is one clear InputError."""
    path = check_regular_file(path, "checkpoint")
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
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir())
    for p in files:  # a pipe, device or broken link named like an image: refused, not skipped
        check_regular_file(p, "image")
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
    return files


def output_names(files: Sequence[Path], suffix: str = ".png") -> list[str]:
    """One distinct output file name per input file, decided before any work (folder batches).

    ``photo.jpg -> photo.png``; inputs whose stems collide keep their extension
    (``a.jpg -> a_jpg.png``, ``a.png -> a_png.png``); a name that is still taken (by
    an input whose own stem is ``a_png``, say) gets ``_2``, ``_3`` ... in input order.
    Names are compared case-insensitively, as on macOS and Windows file systems, where
    ``A.png`` and ``a.png`` are one file. Deterministic for a given list, so a resumed
    batch maps every input to the same output.
    """
    stems = [p.stem.casefold() for p in files]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    unique = [counts[stem] == 1 for stem in stems]
    taken = {(p.stem + suffix).casefold() for p, u in zip(files, unique, strict=True) if u}  # plain names first
    names = []
    for p, u in zip(files, unique, strict=True):
        if u:
            names.append(p.stem + suffix)
            continue
        base = f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        name, k = base + suffix, 1
        while name.casefold() in taken:
            k += 1
            name = f"{base}_{k}{suffix}"
        taken.add(name.casefold())
        names.append(name)
    return names


def _file_key(path: Path) -> tuple:
    """What identifies a file: its inode when it exists (hard links, symlinks, ``..``), else its absolute path."""
    try:
        st = path.stat()
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.normcase(os.path.abspath(path)))


def check_outputs(outputs: Iterable[tuple[str, Path]], inputs: Iterable[tuple[str, Path]]) -> None:
    """The no-clobber rule of every CLI, checked before any work: InputError (one line) if an
    output would be written over one of the run's inputs, or two outputs are one file.

    Args:
        outputs: ``(option, path)`` of every file the run will write (``("--out", out.png)``).
        inputs: ``(option, path)`` of every file (or folder) it reads; a folder given as
            both input and output (``--input DIR --out DIR``) is refused as a whole, as its
            outputs would mix with the inputs and a rerun would read them back.
    """
    read: dict[tuple, tuple[str, Path]] = {}
    for option, path in inputs:
        read.setdefault(_file_key(Path(path)), (option, path))
    written: dict[tuple, tuple[str, Path]] = {}
    for option, path in outputs:
        key = _file_key(Path(path))
        if key in read:
            what, src = read[key]
            kind = "folder" if Path(path).is_dir() else "file"
            raise InputError(f"{option} {path} is the input {kind} ({what} {src}); mgan never writes over its "
                             "inputs: choose another output")
        if key in written:
            raise InputError(f"{written[key][0]} and {option} both name {path}; give them different names")
        written[key] = (option, path)


def check_output_image(path: str | os.PathLike, flag: str = "--out") -> Path:
    """InputError unless ``path`` names an image file (:data:`IMAGE_OUT_EXTENSIONS`) in a writable folder.

    Checked before any work, so a long run does not end in a name :func:`save_image`
    cannot write. The folder is created if needed; returns ``path``.
    """
    path = Path(path)
    if path.suffix.lower() not in IMAGE_OUT_EXTENSIONS:
        raise InputError(f"{flag} {path}: expected an image file name such as out.png")
    check_writable(path.parent if str(path.parent) else Path("."))
    return path


def photo_jobs(content: Path | None, content_dir: Path | None, out: Path,
               flags: tuple[str, str] = ("--content", "--content-dir")) -> tuple[list[tuple[Path, Path]], list[tuple[str, Path]]]:
    """``(jobs, inputs)`` of a CLI that maps one photo to one image, or a folder to a folder.

    One photo: ``[(content, out)]`` after :func:`check_output_image`. A folder: one job per
    image (names from :func:`output_names`), after :func:`check_writable` on ``out``.
    ``inputs`` are the ``(flag, path)`` pairs to give :func:`check_outputs`, so no output
    overwrites an input.
    """
    if content is not None:
        check_output_image(out)
        return [(content, out)], [(flags[0], content)]
    assert content_dir is not None  # the CLIs require --content or --content-dir
    files = list_images(content_dir)
    jobs = [(f, out / name) for f, name in zip(files, output_names(files), strict=True)]
    check_writable(out)
    return jobs, [(flags[1], content_dir), *[(flags[1], f) for f, _ in jobs]]


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


# atomic_write's temp files: .NAME.mgan-tmp-PID.XXXXXXXX.tmp (XXXXXXXX from mkstemp); the
# marker keeps the cleanup off temp-looking files that other programs wrote
_TEMP_NAME = re.compile(r"^\..+\." + re.escape(TEMP_MARKER) + r"(\d+)\.[a-z0-9_]{8}\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Delete the temp files that mgan writers killed mid-:func:`atomic_write` left in ``folder``.

    Only names :func:`atomic_write` makes (``.NAME.mgan-tmp-PID.XXXXXXXX.tmp``) are
    considered, and only when the process named in it is no longer running on this
    machine; files of live writers (other ranks, other jobs) and every other file are
    left alone. ``recursive`` also searches subfolders: for folders mgan owns (a run's
    stage cache), never for a user's ``--out``. Returns the files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in (folder.rglob if recursive else folder.glob)(f".*.{TEMP_MARKER}*.tmp"):
        m = _TEMP_NAME.match(p.name)
        if m and p.is_file() and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                gone.append(p)
    return gone


def make_grid(rows: list[list[Tensor]], pad: int = 4, background: float = 1.0) -> Tensor:
    """Tile images ``[1, 3, h, w]`` of any sizes into one ``[1, 3, H, W]``: row ``r``, column ``c``
    holds ``rows[r][c]``, centred in a cell as large as the largest image of its row and column."""
    ncol = max(len(r) for r in rows)
    heights = [max(im.shape[-2] for im in r) for r in rows]
    widths = [max((r[c].shape[-1] for r in rows if c < len(r)), default=0) for c in range(ncol)]
    H = sum(heights) + pad * (len(rows) + 1)
    W = sum(widths) + pad * (ncol + 1)
    out = torch.full((1, 3, H, W), float(background))
    y = pad
    for r, row in enumerate(rows):
        x = pad
        for c in range(ncol):
            if c < len(row):
                im = row[c].detach().float().cpu().clamp(0, 1)
                h, w = im.shape[-2:]
                oy, ox = y + (heights[r] - h) // 2, x + (widths[c] - w) // 2
                out[..., oy : oy + h, ox : ox + w] = im
            x += widths[c] + pad
        y += heights[r] + pad
    return out
