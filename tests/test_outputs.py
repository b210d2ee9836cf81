"""Issue #15 beyond the bad-input matrix: what gets written, with which permissions and names,
which temp files are cleaned up, how 16/32-bit and float images convert, NaN results and Ctrl-C
at start-up (video timing: test_video.py). Tiny synthetic inputs in ``tmp_path``, CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mgan import config, decode, io, mdan

ROOT = Path(__file__).resolve().parent.parent
DECODE = ["--device", "cpu", "--precision", "fp32", "--quiet"]
MDAN_FAST = ["--iterations", "0", "--size", "32", "--style-size", "40", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _png(path: Path, w: int = 32, h: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# ----------------------------------------------------------------------------- permissions


def test_new_outputs_follow_the_umask_and_overwrites_keep_their_mode(tmp_path, umask_027):
    """mkstemp makes 0600 files; atomic_write gives what open() would: 0666 & ~umask for a
    new file, the old mode for a file it replaces."""
    img = torch.rand(1, 3, 8, 8)
    assert _mode(io.save_image(img, tmp_path / "new.png")) == 0o640
    assert _mode(io.save_checkpoint({"a": 1}, tmp_path / "new.pt")) == 0o640
    old = tmp_path / "old.png"
    io.save_image(img, old)
    old.chmod(0o604)
    io.save_image(img, old)
    assert _mode(old) == 0o604
    os.umask(0o002)
    with io.atomic_write(tmp_path / "notes.txt", "w") as f:
        f.write("x")
    assert _mode(tmp_path / "notes.txt") == 0o664


def test_cli_outputs_get_normal_permissions(tmp_path, umask_027):
    out = tmp_path / "o.png"
    assert decode.main(["--input", str(_png(tmp_path / "a.png")), "--out", str(out), *DECODE]) == 0
    assert _mode(out) == 0o640


# ----------------------------------------------------------------------------- stale temp files


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_stale_temp_cleanup_removes_only_files_mgan_wrote(tmp_path):
    dead = _dead_pid()
    ours = tmp_path / f".x.png.{io.TEMP_MARKER}{dead}.abcd1234.tmp"  # a killed mgan writer's
    live = tmp_path / f".y.png.{io.TEMP_MARKER}{os.getppid()}.abcd1234.tmp"  # a running writer's
    foreign = tmp_path / f".z.png.{dead}.abcd1234.tmp"  # the old, unmarked pattern: anyone's
    notes = tmp_path / ".notes.tmp"
    nested = tmp_path / "sub" / f".w.png.{io.TEMP_MARKER}{dead}.abcd1234.tmp"
    for p in (ours, live, foreign, notes, nested):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    assert io.remove_stale_temps(tmp_path) == [ours]  # not recursive by default
    assert live.is_file() and foreign.is_file() and notes.is_file() and nested.is_file()
    assert io.remove_stale_temps(tmp_path, recursive=True) == [nested]  # for folders mgan owns


def test_atomic_write_temp_names_carry_the_marker(tmp_path):
    with io.atomic_write(tmp_path / "a.bin") as f:
        f.write(b"x")
        (tmp,) = [p for p in tmp_path.iterdir() if p.name != "a.bin"]
        assert io._TEMP_NAME.match(tmp.name) and f".{io.TEMP_MARKER}{os.getpid()}." in tmp.name
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


# ----------------------------------------------------------------------------- names and summaries


def test_output_names_are_distinct_and_deterministic():
    files = [Path(n) for n in ("a.jpg", "a.png", "a_png.png", "B.png", "b.JPG", "c.png")]
    names = io.output_names(files)
    assert names == ["a_jpg.png", "a_png_2.png", "a_png.png", "B_png.png", "b_jpg.png", "c.png"]
    assert len({n.casefold() for n in names}) == len(names)  # one file each, also on case-insensitive disks
    assert io.output_names(files) == names


def test_decode_folder_with_colliding_stems_writes_every_image(tmp_path, capsys):
    src = tmp_path / "in"
    for name, seed in (("a.jpg", 1), ("a.png", 2), ("b.png", 3)):
        _png(src / name, seed=seed)
    assert decode.main(["--input", str(src), "--out", str(tmp_path / "outs"), *DECODE]) == 0
    assert sorted(p.name for p in (tmp_path / "outs").iterdir()) == ["a_jpg.png", "a_png.png", "b.png"]
    assert "wrote 3 images" in capsys.readouterr().out
    with Image.open(tmp_path / "outs" / "a_jpg.png") as a, Image.open(tmp_path / "outs" / "a_png.png") as b:
        assert not np.array_equal(np.asarray(a), np.asarray(b))  # two photos, two outputs


def test_mdan_batch_with_colliding_stems_and_its_resume_summary(tmp_path, capsys):
    src = tmp_path / "in"
    _png(src / "a.jpg", seed=1)
    _png(src / "a.png", seed=2)
    argv = [*MDAN_FAST, "--content-dir", str(src), "--out", str(tmp_path / "outs")]
    assert mdan.main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "outs").glob("*.png")) == ["a_jpg.png", "a_png.png"]
    assert "wrote 2 images" in capsys.readouterr().out
    assert mdan.main(argv) == 0  # everything done: nothing rewritten, and the summary says so
    assert "wrote 0 images" in capsys.readouterr().out.replace("(2 were already there)", "")


# ----------------------------------------------------------------------------- NaN results


def test_a_nan_result_is_an_error_not_a_black_image(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(decode.Decoder, "decode", lambda self, x, **kw: torch.full_like(x, float("nan")))
    out = tmp_path / "o.png"
    assert decode.main(["--input", str(_png(tmp_path / "a.png")), "--out", str(out), *DECODE]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "NaN or infinite" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # nothing written


# ----------------------------------------------------------------------------- image modes


def _load(path: Path, arr: np.ndarray, capsys) -> tuple[np.ndarray, str]:
    Image.fromarray(arr).save(path)
    x = io.load_image(path)
    return x[0, 0].numpy(), capsys.readouterr().err


def test_int32_image_is_scaled_by_its_real_range(tmp_path, capsys):
    arr = np.zeros((8, 8), np.int32)
    arr[4:] = 2**20  # beyond 16 bits: the old code clipped it to white
    arr[:4, :4] = 2**19
    got, note = _load(tmp_path / "i32.tif", arr, capsys)
    with Image.open(tmp_path / "i32.tif") as im:
        assert im.mode == "I"
    assert got[0, 5] == 0 and got[7, 0] == 1 and abs(got[0, 0] - 0.5) < 0.01
    assert "value range [0, 1.04858e+06]" in note


def test_signed_float_image_is_mapped_not_clipped(tmp_path, capsys):
    arr = np.full((8, 8), -1.0, np.float32)
    arr[4:] = 1.0
    arr[:4, :4] = 0.0
    got, note = _load(tmp_path / "f.tif", arr, capsys)
    assert got[0, 5] == 0 and got[7, 0] == 1 and abs(got[0, 0] - 0.5) < 0.01  # -1 -> black, 0 -> grey
    assert "converted F to RGB (rescaled from its value range [-1, 1] to 8 bits)" in note


@pytest.mark.parametrize(("arr", "want"), [
    (np.array([[0.0, 0.25], [0.5, 1.0]], np.float32), [0.0, 0.25, 0.5, 1.0]),  # [0, 1] floats: as they are
    (np.array([[0, 1000], [30000, 65535]], np.int32), [0.0, 1000 / 65535, 30000 / 65535, 1.0]),  # 16-bit data in I
    (np.array([[0, 64], [128, 255]], np.int32), [0.0, 64 / 255, 128 / 255, 1.0]),  # 8-bit data in I
], ids=["float-0-1", "int-16-bit", "int-8-bit"])
def test_nominal_ranges_keep_absolute_levels(tmp_path, capsys, arr, want):
    got, note = _load(tmp_path / "x.tif", arr, capsys)
    assert np.abs(got.ravel() - np.array(want)).max() <= 0.5 / 255 + 1e-6
    assert note.endswith("(rescaled to 8 bits)\n")


# ----------------------------------------------------------------------------- configs


def test_yaml_merge_keys_still_work_duplicates_do_not(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert config.load_yaml(path)["other"] == {"x": 3, "y": 2}
    path.write_text("a:\n  x: 1\nb: 2\na: 3\n")
    with pytest.raises(config.ConfigError, match="line 4: duplicate key 'a'"):
        config.load_yaml(path)


# ----------------------------------------------------------------------------- Ctrl-C while starting


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see torch being imported")
def test_ctrl_c_while_torch_imports_is_one_line_and_130(tmp_path):
    """SIGINT once the child maps libtorch (its imports are under way): no traceback, status 130."""
    proc = subprocess.Popen([sys.executable, "-m", "mgan.decode", "--noise", "perlin", "--size", "64", "--out",
                             str(tmp_path / "o.png"), "--device", "cpu"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < end:
        try:
            if "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text():
                break
        except OSError:
            pass
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("interrupted"), err
    assert not (tmp_path / "o.png").exists()
