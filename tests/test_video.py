"""Video read/write (mgan.video): frames and timestamps in, the same timing out, atomic writes,
damaged inputs; and through ``python -m mgan.decode``: variable frame rates and truncated files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import empty_video, video_frames

from mgan import decode, io, video

pytest.importorskip("av", reason="the [video] extra (PyAV) is not installed")
pytestmark = pytest.mark.usefixtures("one_thread")


def _clip(path: Path, times_ms: list[int], side: int = 32) -> Path:
    """An .mkv whose frames are shown at ``times_ms`` (variable frame rate)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = side, side, "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((side, side, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def _times(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as c:
        return [round(float(f.time), 3) for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def truncated_clip(tmp_path_factory) -> Path:
    """24 frames of noise (MPEG-4 in AVI) cut at 60% of the file: its header still announces 24."""
    import av

    src = tmp_path_factory.mktemp("cut") / "clip.avi"
    rng = np.random.default_rng(0)
    with av.open(str(src), "w") as c:
        s = c.add_stream("mpeg4", rate=24)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for _ in range(24):
            c.mux(s.encode(av.VideoFrame.from_ndarray((rng.random((32, 32, 3)) * 255).astype(np.uint8), format="rgb24")))
        c.mux(s.encode(None))
    src.write_bytes(src.read_bytes()[: src.stat().st_size * 6 // 10])
    return src


# ----------------------------------------------------------------------------- reading


def test_is_video_by_extension():
    assert video.is_video(Path("a/clip.MP4")) and video.is_video(Path("x.mkv"))
    assert not video.is_video(Path("photo.png")) and not video.is_video(Path("mp4"))


def test_read_video_gives_the_frames_in_order(tiny_video):
    frames, fps, count = video.read_video(tiny_video)
    assert (fps, count) == (12, 6)
    got = list(frames)
    assert len(got) == 6 and all(f.shape == (1, 3, 48, 64) for f in got)
    # the bright bar covers columns 8 i ... 8 i + 11 of frame i
    centres = [int(f[0].mean((0, 1)).argmax()) for f in got]
    assert all(abs(c - (8 * i + 5.5)) <= 6 for i, c in enumerate(centres)), centres
    assert frames.shortfall() is None and frames.lost == 0 and frames.decoded == 6


def test_read_video_errors_name_the_file(tmp_path):
    (tmp_path / "zeros.mp4").write_bytes(b"\x00" * 256)
    with pytest.raises(io.InputError, match="zeros.mp4: cannot open video"):
        video.read_video(tmp_path / "zeros.mp4")
    with pytest.raises(io.InputError, match="no video stream"):
        video.read_video(empty_video(tmp_path / "empty.mp4"))  # an .mp4 without frames has no track


def test_truncated_video_keeps_what_decodes_and_says_so(truncated_clip):
    frames, _, count = video.read_video(truncated_clip)
    n = sum(1 for _ in frames)
    assert count == 24 and 0 < n < 24 and frames.decoded == n
    why = frames.shortfall()
    assert why is not None and f"decoded {n} of the 24 frames its header announces" in why and "truncated" in why


# ----------------------------------------------------------------------------- writing


def test_writer_keeps_the_input_timestamps_and_pixels(tmp_path):
    times = [0, 40, 80, 120, 320, 520, 720]  # 25 fps, then 5 fps
    frames, fps, _ = video.read_video(_clip(tmp_path / "vfr.mkv", times))
    writer = video.VideoWriter(tmp_path / "out.mkv", fps, frames.time_base)
    inputs = []
    for frame in frames:
        inputs.append(frame)
        writer.write(frame, frames.pts)
    writer.close()
    assert writer.frames == 7 and _times(tmp_path / "out.mkv") == [t / 1000 for t in times]
    back = [torch.from_numpy(a).permute(2, 0, 1).float() / 255 for a in video_frames(tmp_path / "out.mkv")]
    for a, b in zip(inputs, back, strict=True):  # flat grey frames: lossy coding moves them by a level or two
        assert (a[0] - b).abs().mean() < 3 / 255


def test_writer_without_timestamps_follows_the_frame_rate(tmp_path):
    writer = video.VideoWriter(tmp_path / "out.mp4", Fraction(10))
    for i in range(3):
        writer.write(torch.full((1, 3, 32, 32), 0.2 * i))
    writer.close()
    assert _times(tmp_path / "out.mp4") == [0.0, 0.1, 0.2]


def test_writer_crops_odd_sides_to_even(tmp_path):
    writer = video.VideoWriter(tmp_path / "odd.mp4", 8)
    writer.write(torch.rand(3, 33, 21))  # [3, H, W] is accepted too
    writer.close()
    assert [f.shape for f in video_frames(tmp_path / "odd.mp4")] == [(32, 20, 3)]


def test_writer_leaves_nothing_unless_closed_with_frames(tmp_path):
    empty = video.VideoWriter(tmp_path / "none.mp4", 8)
    empty.close()  # no frame written
    failed = video.VideoWriter(tmp_path / "failed.mp4", 8)
    failed.write(torch.rand(1, 3, 32, 32))
    with pytest.raises(FloatingPointError, match="NaN"):
        failed.write(torch.full((1, 3, 32, 32), float("nan")))
    failed.close(ok=False)
    assert list(tmp_path.iterdir()) == []  # no output, no temp file
    with pytest.raises(io.InputError, match="video output must end in"):
        video.VideoWriter(tmp_path / "clip.gif", 8)


# ----------------------------------------------------------------------------- through the decode CLI


def test_variable_frame_rate_video_keeps_its_timing(tiny_release, tmp_path, capsys):
    times = [0, 40, 80, 120, 320, 520, 720]  # 25 fps, then 5 fps
    src = _clip(tmp_path / "vfr.mkv", times)
    out = tmp_path / "out.mp4"
    assert decode.main(["--model", str(tiny_release), "--input", str(src), "--out", str(out), "--quiet"]) == 0
    assert _times(out) == [t / 1000 for t in times]
    assert "note:" not in capsys.readouterr().err


def test_truncated_video_is_reported_and_keeps_what_decodes(tiny_release, truncated_clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert decode.main(["--model", str(tiny_release), "--input", str(truncated_clip), "--out", str(out),
                        "--quiet"]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "of the 24 frames its header announces" in notes[0] and "truncated" in notes[0]
    n = int(notes[0].split("decoded ")[1].split()[0])
    assert 0 < n < 24 and len(_times(out)) == n
