"""Video read/write for frame-by-frame decoding (PyAV, the ``[video]`` extra).

:func:`read_video` yields ``[1, 3, H, W]`` frames in ``[0, 1]`` with each frame's
timestamp; :class:`VideoWriter` writes such frames (H.264 where available) at those
timestamps, atomically. A variable frame rate, and gaps left by packets that could not be
decoded, survive the round trip, so a decoded video stays in sync with its source. The
``av`` package is imported on first use: without it, one error line names the extra.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Generator
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mgan import io
from mgan.errors import InputError, one_line

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
VIDEO_OUT_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".m4v": "mp4"}


def is_video(path: Path) -> bool:
    """Whether ``path`` names a video by its extension."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def read_video(path: str | os.PathLike) -> tuple[VideoFrames, Fraction, int]:
    """Open a video: ``(frames, fps, frame count or 0 if unknown)``; frames are ``[1, 3, H, W]`` in ``[0, 1]``.

    Audio and other streams are ignored. Raises :class:`InputError` if the file cannot
    be opened or has no video stream, and the iterator if not one frame decodes. Each
    frame's timestamp is kept (:class:`VideoFrames`), so a variable-frame-rate video
    keeps its timing; frames that cannot be decoded are skipped and counted.
    """
    from mgan.extras import require  # noqa: PLC0415

    av = require("av", "video input")  # the [video] extra; one error line when it is missing

    path = io.check_regular_file(path, "video")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot open video ({_first_line(exc)})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame/slice-threaded decoding in FFmpeg
    fps = stream.average_rate or stream.guessed_rate or Fraction(25)
    count = int(stream.frames or 0)
    return VideoFrames(path, container, stream, Fraction(fps), count), Fraction(fps), count


class VideoFrames:
    """Iterator over the decoded frames of :func:`read_video`, ``[1, 3, H, W]`` in ``[0, 1]``.

    After each frame, :attr:`pts` is its presentation time in :attr:`time_base` units
    (``None`` if the file has none), for :meth:`VideoWriter.write`. Packets that fail
    to decode (a damaged or truncated file) are skipped and counted in :attr:`lost`
    rather than ending the video, as the timestamps keep the rest in sync;
    :meth:`shortfall` says afterwards whether frames are missing. The container is
    closed when the iterator is exhausted or :meth:`close` d.
    """

    def __init__(self, path: Path, container: Any, stream: Any, fps: Fraction, count: int) -> None:
        self.path, self.fps, self.count = path, fps, count
        self.time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        self.duration = container.duration / 1e6 if container.duration else None  # seconds, as announced
        self.pts: int | None = None
        self.decoded = 0
        self.lost = 0
        self._end: float | None = None  # seconds: the last decoded frame's time
        self._gen = self._frames(container, stream)

    def _frames(self, container: Any, stream: Any) -> Generator[Tensor, None, None]:
        import av  # noqa: PLC0415

        first_error = None
        try:
            for packet in container.demux(stream):  # the last packet is empty: it flushes the decoder
                try:
                    decoded = packet.decode()
                except av.FFmpegError as exc:
                    self.lost += 1
                    first_error = first_error or exc
                    continue
                for frame in decoded:
                    self.pts = frame.pts
                    if frame.pts is not None:
                        self._end = float(frame.pts * self.time_base)
                    self.decoded += 1
                    arr = frame.to_ndarray(format="rgb24")
                    yield torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        except av.FFmpegError as exc:  # the container itself is unreadable from here on
            self.lost += 1
            first_error = first_error or exc
        finally:
            container.close()
        if self.decoded == 0 and first_error is not None:
            raise InputError(f"{self.path}: cannot decode video ({_first_line(first_error)})")

    def __iter__(self) -> VideoFrames:
        return self

    def __next__(self) -> Tensor:
        return next(self._gen)

    def close(self) -> None:
        """Stop early and close the file."""
        self._gen.close()

    def shortfall(self) -> str | None:
        """After the last frame: why the video looks incomplete (``None`` if it does not)."""
        why = []
        if self.count and self.decoded < self.count:
            why.append(f"decoded {self.decoded} of the {self.count} frames its header announces")
        elif self.duration and self._end is not None and self._end + 1.5 / float(self.fps) < self.duration:
            why.append(f"its frames end at {self._end:.2f} s of the {self.duration:.2f} s it announces")
        if self.lost:
            why.append(f"{self.lost} packet{'s' * (self.lost > 1)} could not be decoded")
        return "; ".join(why) + "; the file may be truncated or damaged" if why else None


def _first_line(exc: BaseException) -> str:
    return one_line(exc)[:160]  # FFmpeg's messages can be long


class VideoWriter:
    """Write ``[1, 3, H, W]`` frames in ``[0, 1]`` to a video file, atomically on :meth:`close`.

    H.264 (``libx264``, CRF 18, yuv420p) when available, else MPEG-4 Part 2. Sides are
    cropped to even numbers as yuv420p needs. Nothing appears at ``path`` unless at
    least one frame was written and :meth:`close` succeeded.

    Timing: with ``time_base`` (the input's, :attr:`VideoFrames.time_base`) each frame is
    written at the ``pts`` given to :meth:`write`, so a variable frame rate and gaps
    left by undecodable frames are kept; otherwise (or for a frame without a timestamp)
    frames follow each other at ``fps``.
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | float, time_base: Fraction | None = None) -> None:
        from mgan.extras import require  # noqa: PLC0415

        av = require("av", "video output")  # the [video] extra; one error line when it is missing

        self.path = Path(path)
        fmt = VIDEO_OUT_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise InputError(f"--out {self.path}: video output must end in {', '.join(VIDEO_OUT_FORMATS)}")
        self._cm = io.atomic_write(self.path)
        self._file = self._cm.__enter__()
        self._av = av
        self.container = av.open(self._file, "w", format=fmt)
        self.fps = Fraction(fps).limit_denominator(1001 * 1000)
        self.time_base = Fraction(time_base) if time_base else 1 / self.fps
        self.codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._enc_time_base = self.time_base
        if self.codec == "mpeg4" and self.time_base.denominator > 65535:  # MPEG-4 Part 2's limit
            self._enc_time_base = Fraction(1, 60000)
        self.stream: Any = None  # av's video stream, added by the first write (whose frame fixes the size)
        self.frames = 0
        self._first_pts: int | None = None
        self._last_pts = -1

    def _next_pts(self, pts: int | None) -> int:
        """The encoder timestamp of the next frame: the input's ``pts`` relative to the first
        frame's, else one frame period after the last; always increasing, as muxers require."""
        if pts is not None and (self._first_pts is not None or not self.frames):
            if self._first_pts is None:
                self._first_pts = pts
            t = (pts - self._first_pts) * self.time_base
        else:  # no timestamp: one frame period after the last frame (the first at 0)
            t = self._last_pts * self._enc_time_base + 1 / self.fps if self.frames else Fraction(0)
        out = max(round(t / self._enc_time_base), self._last_pts + 1)
        self._last_pts = out
        return out

    def write(self, frame: Tensor, pts: int | None = None) -> None:
        """Append one frame ``[1, 3, H, W]`` (or ``[3, H, W]``) in ``[0, 1]``, shown at ``pts``
        (in ``time_base`` units of the input; ``None``: one frame period after the last)."""
        io.check_finite_image(frame, self.path)
        arr = io.to_uint8(frame)
        h, w = arr.shape[0] // 2 * 2, arr.shape[1] // 2 * 2
        arr = arr[:h, :w]
        if self.stream is None:
            self.stream = self.container.add_stream(self.codec, rate=self.fps)
            self.stream.width, self.stream.height, self.stream.pix_fmt = w, h, "yuv420p"
            self.stream.time_base = self.stream.codec_context.time_base = self._enc_time_base
            if self.codec == "libx264":
                self.stream.options = {"crf": "18"}
        vf = self._av.VideoFrame.from_ndarray(arr, format="rgb24")
        vf.pts, vf.time_base = self._next_pts(pts), self._enc_time_base
        self.container.mux(self.stream.encode(vf))
        self.frames += 1

    def close(self, ok: bool = True) -> None:
        """Flush and move the file into place (``ok``), or discard it."""
        try:
            if ok and self.stream is not None:
                self.container.mux(self.stream.encode(None))
            self.container.close()
        except BaseException:
            self._cm.__exit__(*sys.exc_info())
            raise
        if ok and self.frames:
            self._cm.__exit__(None, None, None)
        else:
            with contextlib.suppress(RuntimeError):
                self._cm.__exit__(RuntimeError, RuntimeError("discarded"), None)

