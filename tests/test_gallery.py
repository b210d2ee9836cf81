"""docs/gallery.py: the script that regenerates the README gallery (issue #13 item 4)."""

import pytest
import torch
from conftest import load_docs_script
from PIL import Image

from mgan import io, zoo


@pytest.fixture(scope="module")
def gallery():
    return load_docs_script("gallery")


def test_gallery_has_a_row_per_style_and_a_column_per_input(gallery, tmp_path, one_thread):
    photos = []
    for i, (h, w) in enumerate([(40, 56), (48, 32)]):
        photos.append(tmp_path / f"p{i}.png")
        io.save_image(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(i)), photos[-1])
    out = tmp_path / "g.png"
    assert gallery.main(["--photos", *map(str, photos), "--size", "48", "--cell", "32", "--out", str(out),
                         "--device", "cpu"]) == 0
    with Image.open(out) as im:
        width, height = im.size
    rows = 1 + len(zoo.bundled())
    assert height == rows * 32 + (rows + 1) * 4
    widths = [round(56 * 32 / 40), round(32 * 32 / 48), 32]  # photo cells at height 32, noise square
    assert width == sum(widths) + (len(widths) + 1) * 4


def test_card_picture_is_each_photo_beside_its_decode_then_noise(gallery, tmp_path, one_thread):
    photo = tmp_path / "p.png"
    io.save_image(torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0)), photo)
    out = tmp_path / "card.png"
    assert gallery.main(["--card", "picasso", "--photos", str(photo), "--size", "48", "--cell", "32",
                         "--out", str(out), "--device", "cpu"]) == 0
    with Image.open(out) as im:
        width, height = im.size
    assert height == 32 + 2 * 4  # one row
    widths = [round(56 * 32 / 40)] * 2 + [32]  # photo, its decode (same shape), the Perlin decode
    assert width == sum(widths) + (len(widths) + 1) * 4
    assert gallery.main(["--card", "nosuch", "--out", str(tmp_path / "c.png")]) == 2


def test_bad_input_is_one_line(gallery, tmp_path, capsys):
    assert gallery.main(["--photos", str(tmp_path / "missing.png"), "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "g.png").exists()
    assert gallery.main(["--size", "8", "--out", str(tmp_path / "g.png")]) == 2
