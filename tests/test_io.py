"""Image loading: modes, EXIF, bad files, sizes; atomic writes; checkpoints; the image-tensor helpers."""

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
    # exactly the 8-bit levels / 255, channels first (a dtype or range check alone could not fail)
    assert torch.equal(x, torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255)
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


# --------------------------------------------------------------------------- image tensors shared by the engines


def test_resize_longest_sides_multiple_and_identity():
    x = torch.rand(1, 3, 30, 40, generator=torch.Generator().manual_seed(0))
    assert io.resize_longest(x, 40) is x  # already that size: no resampling
    y = io.resize_longest(x, 20)
    assert y.shape == (1, 3, 15, 20) and 0 <= y.min() and y.max() <= 1
    assert io.resize_longest(x, 61, multiple=8).shape == (1, 3, 40, 56)  # 45.75 x 61 rounded down to 8s
    torch.testing.assert_close(io.resize_longest(torch.full((1, 3, 9, 12), 0.3), 24), torch.full((1, 3, 18, 24), 0.3))


@pytest.mark.parametrize("sigma,radius", [(0.5, None), (1.0, 2), (1.3, None)])
def test_gaussian_blur_matches_a_2d_convolution(sigma, radius):
    x = torch.rand(2, 3, 11, 13, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    r = max(1, int(3 * sigma + 0.5)) if radius is None else radius
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    g1 = torch.exp(-(k**2) / (2 * sigma**2))
    g2 = torch.outer(g1, g1) / g1.sum() ** 2  # the separable kernel as one 2-D kernel
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (r, r, r, r), mode="reflect"),
                                     g2.expand(3, 1, -1, -1), groups=3)
    torch.testing.assert_close(io.gaussian_blur(x, sigma, radius), ref)
    flat = torch.full((1, 3, 8, 8), 0.25)
    torch.testing.assert_close(io.gaussian_blur(flat, sigma, radius), flat)


def test_quantize_and_to_uint8_agree():
    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 2.0]).view(1, 1, 1, 7).expand(1, 3, 1, 7)
    q = io.quantize(x)
    assert q.dtype == torch.uint8 and q.shape == x.shape
    assert q[0, 0, 0].tolist() == [0, 0, 0, 2, 128, 255, 255]  # clamped, rounded half to even
    assert (io.to_uint8(x) == q[0].permute(1, 2, 0).numpy()).all()


def test_check_output_image(tmp_path):
    out = io.check_output_image(tmp_path / "new" / "out.PNG")
    assert out == tmp_path / "new" / "out.PNG" and (tmp_path / "new").is_dir()
    for name in ("out.txt", "out", "out.gif"):
        with pytest.raises(io.InputError, match=f"--style-out {tmp_path / name}: expected an image file name"):
            io.check_output_image(tmp_path / name, "--style-out")


def test_photo_jobs_one_photo_or_a_folder(tmp_path):
    from mgan.errors import InputError

    src = tmp_path / "in"
    src.mkdir()
    for name in ("b.png", "a.jpg"):
        io.save_image(torch.rand(1, 3, 8, 8), src / name)
    jobs, inputs = io.photo_jobs(src / "a.jpg", None, tmp_path / "o.png")
    assert jobs == [(src / "a.jpg", tmp_path / "o.png")] and inputs == [("--content", src / "a.jpg")]
    jobs, inputs = io.photo_jobs(None, src, tmp_path / "out")
    assert [(s.name, d) for s, d in jobs] == [("a.jpg", tmp_path / "out" / "a.png"), ("b.png", tmp_path / "out" / "b.png")]
    assert (tmp_path / "out").is_dir() and inputs[0] == ("--content-dir", src) and len(inputs) == 3
    with pytest.raises(InputError, match="image file name"):
        io.photo_jobs(src / "a.jpg", None, tmp_path / "o.txt")
