"""A local web page for artists over the MGAN decoder (issue #14): ``python -m mgan.app``.

The page (Gradio, the optional extra ``pip install -e ".[app]"``) decodes an uploaded
photo or short video, or a Perlin / brown noise image, with a bundled generator or one
the user uploads, and offers the result for download with the time it took. It is
served on 127.0.0.1 only unless ``--host`` says otherwise, never through a share link,
and with Gradio's analytics and version check off: the app makes no call outside the
machine, and the page loads nothing from outside it (Gradio's default fonts are local).

Layers, top-down:

* :func:`job_from_ui` turns the values of the page's controls into a :class:`Job`,
  checking each one (a clear :class:`~mgan.errors.InputError` per bad value);
* :func:`run_job` decodes a job with a :class:`~mgan.decode.Decoder` into a run folder;
* :class:`DecoderCache` loads each generator once (keyed by the file's content, so a
  re-uploaded file is not loaded again) and shares it between requests, under a lock;
* :class:`AppFiles` is the one temporary folder the app writes to: Gradio's upload cache
  and one folder per browser session (only the newest run's files are kept), removed
  when the session's tab closes and, whole, when the app stops;
* :func:`build` lays out the page; :func:`main` is the CLI.

None of these but :func:`build` imports Gradio, so the engine is tested without it.
Decoding runs in Gradio's queue, one job at a time (the CPU is the bottleneck; more
would only slow each other down): the page stays responsive, a waiting user sees their
place in the queue, and videos and large (tiled) images show a progress bar.

Every error a user can cause (not an image, a truncated file, a huge image, a video
that is too long, a file that is not an mgan generator, an impossible size) reaches the
page as one sentence; anything else is logged with its traceback in the terminal and
the page says only that it failed. Either way the app keeps serving.
"""

# No ``from __future__ import annotations`` here: Gradio finds the ``gr.Request`` argument
# of a handler by its evaluated annotation, which a string annotation naming the locally
# imported ``gr`` would hide (Python 3.10+ needs no future import for ``X | None`` anyway).

import argparse
import collections
import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mgan import cli, decode, io, video
from mgan import precision as prec
from mgan.errors import ConfigError, InputError, WeightsError

SOURCES = ("Photo or video", "Noise")
NOISE_KINDS = ("perlin", "brown")
DEFAULT_SIZE = 512  # px, longest side: a few seconds per image on a laptop CPU
USER_ERRORS = (InputError, ConfigError, WeightsError)
Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is running)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; the CLI sets them (see ``--help``)."""

    max_side: int = 2048  # longest output side, px
    max_pixels: int = 50_000_000  # input image pixels
    max_frames: int = 300  # video frames (10 s at 30 fps)
    max_upload_mb: int = 200


# ----------------------------------------------------------------------------- models


def bundled_models() -> dict[str, Path]:
    """Name -> file of the bundled generators (:func:`mgan.zoo.bundled`), the default (picasso) first."""
    from mgan import zoo  # noqa: PLC0415

    default = decode.DEFAULT_MODEL.stem
    return dict(sorted(zoo.bundled().items(), key=lambda kv: kv[0] != default))


def describe_model(path: Path) -> str:
    """A short Markdown note on a release from its model card (:mod:`mgan.zoo`), or ``""``.

    Title, painter and year, then the licence status (Picasso's card says its painting is
    not public domain everywhere: an artist should see that before publishing a result).
    """
    from mgan import zoo  # noqa: PLC0415

    try:
        card = zoo.read_card(path)
    except InputError:
        return ""  # a description is optional; loading the model gives the real error
    title, painter, year = (card.get(k) for k in ("title", "painter", "year"))
    head = ", ".join(x for x in (f"*{title}*" if title else "", str(painter or "")) if x)
    if year:
        head += f" ({year})"
    lines = [head] if head else []
    if card.get("licence"):
        lines.append(f"Licence: {card['licence']}")
    if card.get("steps") and card.get("photos"):
        lines.append(f"Trained {card['steps']} steps on {card['photos']} photos.")
    return "  \n".join(lines)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class DecoderCache:
    """Decoders by generator *content*, loaded once and reused; at most ``capacity`` kept (LRU).

    Args:
        device, precision, tile_memory_mb: passed to every :class:`~mgan.decode.Decoder`.
        capacity: generators kept in memory (a full-width one is ~20 MB plus its tiles).
        factory: builds a decoder from ``(path, device=, precision=, tile_memory_mb=)``; tests pass a spy.
    """

    def __init__(self, device: str = "auto", precision: str = "auto", capacity: int = 3,
                 tile_memory_mb: float = decode.DEFAULT_TILE_MEMORY_MB,
                 factory: Callable[..., decode.Decoder] = decode.Decoder) -> None:
        self.device, self.precision, self.capacity, self.factory = device, precision, capacity, factory
        self.tile_memory_mb = tile_memory_mb
        self._decoders: collections.OrderedDict[str, decode.Decoder] = collections.OrderedDict()
        # One lock for lookups and loads: two requests for the same new model wait for one load.
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, model: Path) -> decode.Decoder:
        """The decoder of the release ``model`` (InputError if it is not an mgan generator)."""
        io.check_regular_file(model, "generator")
        key = _file_digest(model)
        with self._lock:
            if key in self._decoders:
                self._decoders.move_to_end(key)
                return self._decoders[key]
            decoder = self.factory(model, device=self.device, precision=self.precision,
                                   tile_memory_mb=self.tile_memory_mb)
            self.loads += 1
            self._decoders[key] = decoder
            while len(self._decoders) > self.capacity:
                self._decoders.popitem(last=False)
            return decoder


# ----------------------------------------------------------------------------- files


class AppFiles:
    """The app's own temporary folder: everything it or Gradio writes goes below it.

    ``root/uploads`` is Gradio's upload and result cache (``GRADIO_TEMP_DIR``);
    ``root/sessions/<session>/<run>`` holds one run's inputs and outputs. A session
    keeps only its newest run (Gradio has copied older results into its cache by
    then), its folder goes when its tab closes, and :meth:`cleanup` removes everything.
    Sessions are named by Gradio's random session hash, so users never share a folder.
    """

    def __init__(self, parent: str | os.PathLike | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mgan-app-", dir=parent))
        self.uploads = self.root / "uploads"
        self.sessions = self.root / "sessions"
        self.uploads.mkdir()
        self.sessions.mkdir()
        self._lock = threading.Lock()

    def session_dir(self, session: str | None) -> Path:
        """The folder of a session (a fresh one-off name when there is no session)."""
        name = re.sub(r"[^A-Za-z0-9_-]", "", session or "")[:64] or f"anon-{uuid.uuid4().hex}"
        return self.sessions / name

    def new_run(self, session: str | None) -> Path:
        """A new empty run folder of ``session``; the session's older runs are removed."""
        folder = self.session_dir(session)
        with self._lock:
            if folder.is_dir():
                for old in folder.iterdir():
                    shutil.rmtree(old, ignore_errors=True)
            run = folder / uuid.uuid4().hex[:12]
            run.mkdir(parents=True)
        return run

    def end_session(self, session: str | None) -> None:
        """Remove a session's folder (its tab was closed)."""
        if session:
            shutil.rmtree(self.session_dir(session), ignore_errors=True)

    def cleanup(self) -> None:
        """Remove the whole folder (the app is stopping)."""
        shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One press of the button: everything the decode needs, already checked.

    Args:
        source: ``"upload"`` (a photo or video in ``upload``) or ``"noise"``.
        upload: the uploaded file (an image, or a video by its extension).
        name: the name the user knows the upload by (error messages, output names).
        noise, seed, tileable: the noise image (``"perlin"`` or ``"brown"``).
        model: the generator release to decode with; ``model_name`` names it.
        size: longest output side in px (noise: the square's side); 0 keeps the input's.
        strength, preserve_colors, mask: decode-time controls (:mod:`mgan.controls`);
            photos and videos only.
        postprocess: G's output post-process (:class:`mgan.decode.Decoder`): ``"auto"``
            (the painting's colours where the model carries them) or ``"none"`` (G's own).
    """

    source: str
    model: Path
    model_name: str
    upload: Path | None = None
    name: str = ""
    noise: str = "perlin"
    seed: int = 0
    tileable: bool = False
    size: int = DEFAULT_SIZE
    strength: float = 1.0
    preserve_colors: bool = False
    mask: Path | None = None
    postprocess: str = "auto"


@dataclass
class Result:
    """What a run produced: ``path`` (PNG or MP4), its ``kind`` ("image"/"video"), size and timing."""

    path: Path
    kind: str
    width: int
    height: int
    frames: int = 1
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _int(value: object, what: str) -> int:
    """A whole number from a page field (Gradio numbers arrive as float, or None when empty)."""
    if value is None or value == "":
        raise InputError(f"{what} is empty; enter a whole number")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a whole number, got {value!r}") from None
    if not f.is_integer():
        raise InputError(f"{what} must be a whole number, got {value}")
    return int(f)


def _path(value: object) -> Path | None:
    """A file path from a Gradio file component (a str path, or None when nothing is uploaded)."""
    if value is None or value == "":
        return None
    return Path(getattr(value, "name", value))  # type: ignore[arg-type]


def job_from_ui(
    source: str,
    upload: object,
    noise: str,
    seed: object,
    tileable: bool,
    model_name: str | None,
    model_upload: object,
    size: object,
    strength: float = 1.0,
    preserve_colors: bool = False,
    mask: object = None,
    limits: Limits = Limits(),  # noqa: B008  (frozen)
    palette: bool = True,
) -> Job:
    """Check the page's values and turn them into a :class:`Job` (InputError names the bad field).

    An uploaded generator wins over the bundled choice. ``size`` 0 keeps an upload's size
    (noise: :data:`DEFAULT_SIZE`); a tileable noise side is rounded down to a multiple of
    8 (the decoder needs it). The controls apply to photos and videos only. ``palette``:
    the painting's colour palette (the decoder's default post-process) or, unticked, the
    generator's own output.
    """
    postprocess = "auto" if palette else "none"
    if source not in SOURCES:
        raise InputError(f"choose the input: {' or '.join(SOURCES)}")
    side = _int(size, "Output size")
    if side != 0 and not 64 <= side <= limits.max_side:
        raise InputError(f"Output size must be between 64 and {limits.max_side} px (0 keeps the photo's size), got {side}")
    own = _path(model_upload)
    if own is not None:
        model, label = own, own.stem
    else:
        models = bundled_models()
        if not models:
            raise InputError("no bundled generator found in mgan/assets/; upload a generator file (.safetensors)")
        label = model_name or next(iter(models))
        if label not in models:
            raise InputError(f"unknown style {label!r}; choose one of {', '.join(models)}")
        model = models[label]
    if source == SOURCES[1]:
        if noise not in NOISE_KINDS:
            raise InputError(f"noise must be one of {', '.join(NOISE_KINDS)}, got {noise!r}")
        seed_value = _int(seed, "Seed")
        if not 0 <= seed_value < 2**63:
            raise InputError(f"Seed must be between 0 and 2^63 - 1, got {seed_value}")
        side = side or DEFAULT_SIZE
        if tileable:
            side = side // 8 * 8
        return Job("noise", model, label, noise=noise, seed=seed_value, tileable=bool(tileable), size=side,
                   postprocess=postprocess)
    path = _path(upload)
    if path is None:
        raise InputError("upload a photo or a short video first (or choose Noise)")
    strength = 1.0 if strength is None else strength
    if not 0.0 <= float(strength) <= 1.0:
        raise InputError(f"Strength must be in [0, 1], got {strength}")
    return Job("upload", model, label, upload=path, name=path.name, size=side, strength=float(strength),
               preserve_colors=bool(preserve_colors), mask=_path(mask), postprocess=postprocess)


def _user_message(exc: BaseException, job_paths: dict[str, str]) -> str:
    """``exc``'s first line with the app's temporary paths replaced by the names the user knows."""
    text = cli.one_line(exc)
    for path, name in sorted(job_paths.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(path, name)
    return text


def _out_size(w: int, h: int, side: int, limits: Limits, name: str) -> tuple[int, int]:
    """Output ``(W, H)``: longest side ``side`` (0: unchanged, which must fit ``limits.max_side``)."""
    if side == 0 and max(w, h) > limits.max_side:
        raise InputError(
            f"{name} is {w}x{h}; the app makes images up to {limits.max_side} px on the longest side: set Output size"
        )
    return decode.target_size(w, h, side or None)


def _controls(job: Job):
    """The job's :class:`mgan.controls.Controls` (mask loaded), the identity when none are set."""
    from mgan import controls  # noqa: PLC0415

    mask = controls.load_mask(job.mask) if job.mask is not None else None
    return controls.Controls(strength=job.strength, preserve_colors=job.preserve_colors, mask=mask)


def run_job(job: Job, decoder: decode.Decoder, folder: Path, limits: Limits = Limits(),  # noqa: B008
            progress: Progress | None = None) -> Result:
    """Decode ``job`` with ``decoder``; the output is written into ``folder``.

    Raises :class:`~mgan.errors.InputError` with a message in the user's terms (their file
    names, not the app's temporary paths) for anything wrong with the inputs.
    """
    names = {str(p): p.name for p in (job.upload, job.mask) if p is not None}
    names[str(job.model)] = job.model.name
    t0 = time.perf_counter()
    try:
        if job.source == "noise":
            result = _run_noise(job, decoder, folder, progress)
        else:
            assert job.upload is not None  # job_from_ui gives every upload job its file
            if video.is_video(job.upload):
                result = _run_video(job, job.upload, decoder, folder, limits, progress)
            else:
                result = _run_image(job, job.upload, decoder, folder, limits, progress)
    except USER_ERRORS as exc:
        raise InputError(_user_message(exc, names)) from None
    result.seconds = time.perf_counter() - t0
    return result


def _safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem)[:60] or "input"


def _run_noise(job: Job, decoder: decode.Decoder, folder: Path, progress: Progress | None) -> Result:
    from mgan.noise import decode_scale, make_noise  # noqa: PLC0415

    side = job.size
    if progress:
        progress(0.0, f"{job.noise} noise")
    # The CLI's defaults (mgan.decode --noise): the model's measured scale (mgan.noise.decode_scale).
    options: dict = {"scale": decode_scale(job.noise, job.model)}
    if job.noise == "perlin":
        options["tileable"] = job.tileable
    x = make_noise(job.noise, side, side, seed=job.seed, **options)
    if progress:
        progress(0.1, "decoding")
    y = decoder.decode(x, tileable=job.tileable, progress=progress is not None, postprocess=job.postprocess)
    out = folder / f"{job.noise}-seed{job.seed}{'-tile' if job.tileable else ''}-{_safe_stem(job.model_name)}.png"
    io.save_image(y, out)
    return Result(out, "image", side, side)


def _run_image(job: Job, upload: Path, decoder: decode.Decoder, folder: Path, limits: Limits,
               progress: Progress | None) -> Result:
    from mgan import controls  # noqa: PLC0415

    w0, h0 = io.probe_image(upload, min_side=8)
    if w0 * h0 > limits.max_pixels:
        raise InputError(
            f"{job.name} is {w0}x{h0} ({w0 * h0 / 1e6:.0f} MP); the app accepts images up to "
            f"{limits.max_pixels / 1e6:.0f} MP (start it with --max-pixels N to allow more)"
        )
    w, h = _out_size(w0, h0, job.size, limits, job.name)
    ctl = _controls(job)
    if progress:
        progress(0.0, "reading the photo")
    photo = decode.resize(io.load_image(upload, min_side=8), w, h)
    if progress:
        progress(0.1, "decoding")
    y = decoder.decode(photo, progress=progress is not None, postprocess=job.postprocess)
    y = controls.apply(y, photo, ctl)
    out = folder / f"{_safe_stem(job.name)}-{_safe_stem(job.model_name)}.png"
    io.save_image(y, out)
    return Result(out, "image", w, h)


def _close_video(frames) -> None:
    """Close a :func:`~mgan.video.read_video` iterator: its container is closed by the generator's
    ``finally``, which runs only once the generator has started, so start it first."""
    try:
        next(frames, None)
    except InputError:
        pass  # a corrupt stream: the generator has closed its container already
    frames.close()


def _run_video(job: Job, upload: Path, decoder: decode.Decoder, folder: Path, limits: Limits,
               progress: Progress | None) -> Result:
    from mgan import controls  # noqa: PLC0415

    ctl = _controls(job)
    frames, fps, count = video.read_video(upload)
    out = folder / f"{_safe_stem(job.name)}-{_safe_stem(job.model_name)}.mp4"
    w = h = n = 0
    try:
        if count > limits.max_frames:
            raise InputError(
                f"{job.name} has {count} frames; the app decodes videos of up to {limits.max_frames} frames "
                f"({limits.max_frames / float(fps):.0f} s here): trim it or use python -m mgan.decode"
            )
        writer = video.VideoWriter(out, fps, frames.time_base)  # input timestamps kept
        ok = False
        try:
            for i, frame in enumerate(frames):
                if i >= limits.max_frames:
                    raise InputError(f"{job.name} is longer than {limits.max_frames} frames; trim it")
                if i == 0:
                    w, h = _out_size(frame.shape[-1], frame.shape[-2], job.size, limits, job.name)
                    w, h = max(8, w // 2 * 2), max(8, h // 2 * 2)  # yuv420p needs even sides
                x = decode.resize(frame, w, h)
                writer.write(controls.apply(decoder.decode(x, postprocess=job.postprocess), x, ctl), frames.pts)
                if progress:
                    progress((i + 1) / count if count else 0.5, f"frame {i + 1}" + (f" of {count}" if count else ""))
            if writer.frames == 0:
                raise InputError(f"{job.name}: the video has no frames")
            ok = True
        finally:
            n = writer.frames
            writer.close(ok=ok)
    finally:
        _close_video(frames)
    return Result(out, "video", w, h, frames=n, notes=["sound, if any, is not kept"])


def summary(result: Result, load_s: float, model_name: str) -> str:
    """The status line under the result: what was made, with which style, and how long it took."""
    what = f"{result.frames} frames {result.width}x{result.height}" if result.kind == "video" else (
        f"{result.width}x{result.height} PNG")
    text = f"Done in {result.seconds + load_s:.2f} s: {what}, style {model_name}"
    if load_s >= 0.05:
        text += f" (loading the style took {load_s:.2f} s of it)"
    for note in result.notes:
        text += f"; {note}"
    return text + "."


def check_upload(path: Path, limits: Limits = Limits()) -> str:  # noqa: B008
    """Describe an uploaded photo or video in one line, or raise InputError (shown at once on upload)."""
    names = {str(path): path.name}
    try:
        if video.is_video(path):
            frames, fps, count = video.read_video(path)
            _close_video(frames)  # decodes the first frame: a stream that cannot be decoded is found now
            length = f"{count} frames" if count else "unknown length"
            if count > limits.max_frames:
                raise InputError(f"{path.name} has {count} frames; the app decodes up to {limits.max_frames}")
            return f"{path.name}: video, {length} at {float(fps):.3g} fps"
        w, h = io.probe_image(path, min_side=8)
        if w * h > limits.max_pixels:
            raise InputError(
                f"{path.name} is {w}x{h} ({w * h / 1e6:.0f} MP); the app accepts images up to {limits.max_pixels / 1e6:.0f} MP"
            )
        io.load_image(path, min_side=8)  # a truncated file shows only when its pixels are decoded
        return f"{path.name}: {w}x{h} photo"
    except USER_ERRORS as exc:
        raise InputError(_user_message(exc, names)) from None


# ----------------------------------------------------------------------------- page


def _quiet_gradio(files: AppFiles) -> None:
    """Environment for Gradio, set before it is imported: no analytics, no telemetry, uploads in ``files``."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # also skips its version check
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"  # gradio imports huggingface_hub; nothing here needs the Hub
    os.environ["GRADIO_TEMP_DIR"] = str(files.uploads)


def _log_unexpected(what: str) -> str:
    """Print the traceback of a bug in the terminal; return the page's one line about it."""
    traceback.print_exc(file=sys.stderr)
    exc = sys.exc_info()[1]
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return f"{what} ran out of memory: choose a smaller Output size"
    return f"{what} failed ({type(exc).__name__}); the details are in the terminal that runs the app"


def build(cache: DecoderCache, files: AppFiles, limits: Limits = Limits()):  # noqa: B008
    """The page as a ``gradio.Blocks`` (queued: decodes run one at a time in a worker thread)."""
    _quiet_gradio(files)
    import gradio as gr  # noqa: PLC0415

    models = bundled_models()

    def fail(message: str):
        return gr.Error(message, duration=None, title="Cannot do that", print_exception=False)

    def on_upload(upload):
        path = _path(upload)
        if path is None:
            return gr.update(value=None, visible=False), ""
        try:
            info = check_upload(path, limits)
        except InputError as exc:
            raise fail(str(exc)) from None
        except Exception:  # noqa: BLE001  (a bug must not stop the app; it is logged)
            raise fail(_log_unexpected("Reading the upload")) from None
        preview = None if video.is_video(path) else str(path)
        return gr.update(value=preview, visible=preview is not None), info

    def on_model_upload(upload):
        path = _path(upload)
        if path is None:
            return ""
        try:
            cache.get(path)
        except USER_ERRORS as exc:
            raise fail(_user_message(exc, {str(path): path.name})) from None
        except Exception:  # noqa: BLE001
            raise fail(_log_unexpected("Loading the generator")) from None
        return f"Your generator {path.name} is loaded and will be used instead of the bundled style."

    def on_style(name):
        return describe_model(models[name]) if name in models else ""

    def on_source(source):
        photo = source == SOURCES[0]
        return gr.update(visible=photo), gr.update(visible=not photo)

    def on_run(source, upload, noise, seed, tileable, model_name, model_upload, size, strength, preserve, mask,
               palette, request: gr.Request, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        try:
            job = job_from_ui(source, upload, noise, seed, tileable, model_name, model_upload, size,
                              strength, preserve, mask, limits, palette=palette)
            t0 = time.perf_counter()
            progress(0.0, desc="loading the style")
            decoder = cache.get(job.model)
            load_s = time.perf_counter() - t0
            folder = files.new_run(getattr(request, "session_hash", None))
            result = run_job(job, decoder, folder, limits, progress=lambda f, d: progress(f, desc=d))
        except USER_ERRORS as exc:
            uploads = [p for p in map(_path, (upload, model_upload, mask)) if p is not None]
            raise fail(_user_message(exc, {str(p): p.name for p in uploads})) from None
        except Exception:  # noqa: BLE001
            raise fail(_log_unexpected("Decoding")) from None
        image = result.kind == "image"
        return (gr.update(value=str(result.path) if image else None, visible=image),
                gr.update(value=None if image else str(result.path), visible=not image),
                str(result.path), summary(result, load_s, job.model_name))

    def on_unload(request: gr.Request):
        files.end_session(getattr(request, "session_hash", None))

    with gr.Blocks(title="mgan: Markovian GAN styles", analytics_enabled=False, delete_cache=(1800, 3600)) as page:
        gr.Markdown("## mgan: paint a photo in a style\nMarkovian GANs (Li & Wand, ECCV 2016): "
                    "a photo, a short video or a noise image, decoded by a generator trained on one painting.")
        with gr.Row():
            with gr.Column():
                source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Input", elem_id="source")
                with gr.Group(visible=True) as photo_group:
                    upload = gr.File(label="Photo or short video", file_types=["image", "video"], height=110,
                                     elem_id="upload")
                    preview = gr.Image(label="Your photo", interactive=False, height=200, visible=False,
                                       elem_id="preview")
                    with gr.Accordion("Strength, colours, mask", open=False):
                        strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Strength (0: the photo, 1: full style)")
                        preserve = gr.Checkbox(label="Keep the photo's colours")
                        mask = gr.File(label="Mask: white is styled, black keeps the photo", file_types=["image"])
                with gr.Group(visible=False) as noise_group:
                    noise = gr.Radio(list(NOISE_KINDS), value=NOISE_KINDS[0], label="Noise")
                    seed = gr.Number(value=0, precision=0, label="Seed (same seed, same texture)")
                    tileable = gr.Checkbox(label="Tileable (wraps seamlessly)")
                style = gr.Dropdown(list(models), value=next(iter(models), None), label="Style", elem_id="style")
                style_info = gr.Markdown(on_style(next(iter(models), "")))
                palette = gr.Checkbox(value=True, elem_id="palette",
                                      label="The painting's colour palette (untick: the generator's own output)")
                model_upload = gr.File(label="…or your own generator (.safetensors)", file_types=[".safetensors"],
                                       height=150, elem_id="model_upload")
                size = gr.Number(value=DEFAULT_SIZE, precision=0, elem_id="size",
                                 label=f"Output size: longest side in px, up to {limits.max_side} (0 keeps the photo's size)")
                run = gr.Button("Stylise", variant="primary", elem_id="run")
            with gr.Column():
                result_image = gr.Image(label="Result", type="filepath", format="png", interactive=False,
                                        elem_id="result")
                result_video = gr.Video(label="Result", visible=False, interactive=False, elem_id="result_video")
                download = gr.File(label="Download", interactive=False, elem_id="download")
                status = gr.Markdown(elem_id="status")

        source.change(on_source, source, [photo_group, noise_group], queue=False)
        upload.upload(on_upload, upload, [preview, status], concurrency_limit=4)
        upload.clear(lambda: (gr.update(value=None, visible=False), ""), None, [preview, status], queue=False)
        model_upload.upload(on_model_upload, model_upload, status, concurrency_limit=1)
        style.change(on_style, style, style_info, queue=False)
        run.click(on_run, [source, upload, noise, seed, tileable, style, model_upload, size, strength, preserve, mask,
                           palette],
                  [result_image, result_video, download, status], concurrency_limit=1)
        page.unload(on_unload)
    return page.queue(max_size=32)


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mgan.app",
        description="A local web page that decodes photos, short videos and noise with MGAN generators.",
        epilog="example: python -m mgan.app --port 7860   (then open http://127.0.0.1:7860)",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=prec.CHOICES, default="auto", help=prec.HELP)
    p.add_argument("--max-side", type=int, default=Limits.max_side, help="largest output side in px")
    p.add_argument("--max-pixels", type=int, default=Limits.max_pixels, help="largest input image in pixels")
    p.add_argument("--max-frames", type=int, default=Limits.max_frames, help="longest input video in frames")
    p.add_argument("--max-upload-mb", type=int, default=Limits.max_upload_mb, help="largest upload in MB")
    p.add_argument("--tile-memory", type=float, default=decode.DEFAULT_TILE_MEMORY_MB,
                   help="working-memory budget of one decoder tile, MB (larger images are decoded in tiles)")
    p.add_argument("--models-kept", type=int, default=3, help="generators kept loaded at once")
    p.add_argument("--temp-dir", type=Path, default=None,
                   help="where the app makes its temporary folder (default: the system's); removed on exit")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: serve the page until Ctrl-C or SIGTERM; 0 on a clean stop, 2 on bad options."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _serve(args), interrupted="stopped; temporary files removed", args=args)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (a service manager, a test) stops the app like Ctrl-C, so its temporary folder is removed."""
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise InputError(f"--port must be in 1..65535, got {args.port}")
    if min(args.max_side, args.max_pixels, args.max_frames, args.max_upload_mb, args.models_kept) < 1:
        raise InputError("--max-side, --max-pixels, --max-frames, --max-upload-mb and --models-kept must be >= 1")
    try:
        import gradio  # noqa: F401, PLC0415
    except ImportError:
        raise InputError('the app needs Gradio: pip install -e ".[app]"') from None
    limits = Limits(args.max_side, args.max_pixels, args.max_frames, args.max_upload_mb)
    io.set_max_pixels(max(args.max_pixels, io.DEFAULT_MAX_PIXELS))
    if not args.tile_memory > 0:
        raise InputError(f"--tile-memory must be > 0, got {args.tile_memory}")
    cache = DecoderCache(args.device, args.precision, capacity=args.models_kept, tile_memory_mb=args.tile_memory)
    files = AppFiles(args.temp_dir)
    signal.signal(signal.SIGTERM, _interrupt)
    page = None
    try:
        page = build(cache, files, limits)
        page.launch(server_name=args.host, server_port=args.port, share=False, prevent_thread_lock=True,
                    quiet=True, show_error=False, max_file_size=f"{args.max_upload_mb}mb", ssr_mode=False,
                    mcp_server=False, enable_monitoring=False, pwa=False, run_history=False)
        print(f"mgan app: serving on http://{args.host}:{args.port} (temporary files in {files.root}); "
              "Ctrl-C stops it", flush=True)
        while True:
            time.sleep(3600)
    finally:
        if page is not None:
            page.close()
        files.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
