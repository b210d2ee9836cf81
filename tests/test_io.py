"""Image loading: modes, EXIF, bad files, sizes; atomic writes; checkpoints."""

import numpy as np
import pytest
import torch
from PIL import Image

from mgan import io


@pytest.fixture
def rgb():
    g = np.random.default_rng(0)
    return (g.random((20, 30, 3)) * 255).astype(np.uint8)


def test_rgb_roundtrip(tmp_path, rgb):
    p = tmp_path / "a.png"
    Image.fromarray(rgb).save(p)
    x = io.load_image(p)
    assert x.shape == (1, 3, 20, 30) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    io.save_image(x, tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), rgb)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "1"])
def test_modes_become_rgb(tmp_path, rgb, mode):
    p = tmp_path / f"m.{'jpg' if mode == 'CMYK' else 'png'}"
    Image.fromarray(rgb).convert(mode).save(p)
    x = io.load_image(p)
    assert x.shape == (1, 3, 20, 30)


def test_rgba_composited_on_white(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    Image.fromarray(arr, "RGBA").save(tmp_path / "t.png")
    assert torch.allclose(io.load_image(tmp_path / "t.png"), torch.ones(1, 3, 8, 8))


def test_16bit_png_scaled(tmp_path):
    arr = np.full((10, 10), 65535, np.uint16)
    arr[:5] = 32768
    Image.fromarray(arr).save(tmp_path / "d.png")
    x = io.load_image(tmp_path / "d.png")
    assert abs(x[0, 0, 9, 0].item() - 1.0) < 1e-6 and abs(x[0, 0, 0, 0].item() - 0.5) < 0.01


def test_exif_rotation_applied(tmp_path, rgb):
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert io.load_image(tmp_path / "r.jpg").shape == (1, 3, 30, 20)


def test_resize_and_multiple(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert io.load_image(tmp_path / "a.png", max_side=64, multiple=8).shape == (1, 3, 40, 64)


@pytest.mark.parametrize(
    "content,match",
    [(None, "not found"), (b"hello", "not an image"), ("truncated", "truncated or corrupt")],
)
def test_bad_files(tmp_path, rgb, content, match):
    p = tmp_path / "x.jpg"
    if content == "truncated":
        Image.fromarray(rgb).resize((300, 300)).save(p, quality=95)
        p.write_bytes(p.read_bytes()[:800])
    elif content is not None:
        p.write_bytes(content)
    with pytest.raises(io.InputError, match=match):
        io.load_image(p)


def test_too_small_and_bomb(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "one.png")
    with pytest.raises(io.InputError, match="too small"):
        io.load_image(tmp_path / "one.png", min_side=32)
    Image.new("L", (400, 400)).save(tmp_path / "big.png")
    io.set_max_pixels(100_000)
    try:
        with pytest.raises(io.InputError, match="decompression-bomb"):
            io.load_image(tmp_path / "big.png")
    finally:
        io.set_max_pixels(None)
    assert io.load_image(tmp_path / "big.png").shape == (1, 3, 400, 400)


def test_folder_errors(tmp_path):
    with pytest.raises(io.InputError, match="folder not found"):
        io.list_images(tmp_path / "nope")
    with pytest.raises(io.InputError, match="no images"):
        io.list_images(tmp_path)
    with pytest.raises(io.InputError, match="got a folder"):
        io.load_image(tmp_path)


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError), io.atomic_write(p) as f:
        f.write(b"partial")
        raise RuntimeError("crash mid-write")
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.bin"]


def test_checkpoint_roundtrip_and_refuses_code(tmp_path):
    io.save_checkpoint({"w": torch.ones(2), "step": 3}, tmp_path / "c.pt")
    assert io.load_checkpoint(tmp_path / "c.pt")["step"] == 3

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(io.InputError, match="not a valid mgan checkpoint"):
        io.load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(io.InputError, match="not a valid"):
        io.load_checkpoint(tmp_path / "junk.pt")
