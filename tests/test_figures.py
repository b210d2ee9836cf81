"""docs/figures.py: labelled comparison grids and the training-progression figure (issue #10 item 5)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_docs_script
from PIL import Image

from mgan import io
from mgan.config import dump_yaml
from mgan.decode import Decoder
from mgan.generator import Generator, GeneratorConfig, save_release
from mgan.training.config import ExperimentConfig


@pytest.fixture(scope="module")
def figures():
    return load_docs_script("figures")


def _photos(folder: Path, sizes=((40, 56), (48, 32))) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (h, w) in enumerate(sizes):
        out.append(folder / f"p{i}.png")
        io.save_image(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(i)), out[-1])
    return out


def test_columns_grid_has_a_label_row_and_a_cell_per_output(figures, tmp_path):
    photos = _photos(tmp_path / "photos")
    outs = tmp_path / "outs"
    outs.mkdir()
    for i, p in enumerate(photos):  # outputs at another size than the photos: cells follow the height
        io.save_image(torch.full((1, 3, 20, 28), 0.1 * i), outs / f"{p.stem}.jpg")
    fig = tmp_path / "f.png"
    assert figures.main(["columns", "--photos", *map(str, photos), "--column", "A=" + str(outs),
                         "--height", "32", "--out", str(fig)]) == 0
    with Image.open(fig) as im:
        width, height = im.size
        px = im.convert("RGB").load()
    assert height == figures.LABEL_H + 2 * 32 + 3 * 4
    photo_w = max(round(56 * 32 / 40), round(32 * 32 / 48))
    assert width == photo_w + round(28 * 32 / 20) + 3 * 4
    assert px[width // 2, 2] == (255, 255, 255)  # above the labels: background
    # the second output (value 0.1) sits in row 2, column 2
    y = figures.LABEL_H + 4 + 32 + 4 + 16
    assert abs(px[photo_w + 8 + 10, y][0] - 26) <= 2


def test_progression_decodes_each_checkpoint_like_its_release(figures, tmp_path):
    """A checkpoint's G becomes the same release the run would write: its column equals a
    decode by the release file itself."""
    cfg = ExperimentConfig(model=GeneratorConfig(channels=(16, 8, 8)))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_yaml(cfg))
    G = Generator(cfg.model)
    torch.manual_seed(0)
    for m in G.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    io.save_checkpoint({"G": G.state_dict(), "step": 7}, run / "checkpoint-000007.pt")
    photos = _photos(tmp_path / "photos", sizes=((40, 48),))
    ref = tmp_path / "ref.safetensors"
    G.eval()
    save_release(G, ref)
    expect = Decoder(ref, device="cpu", precision="fp32").decode(io.load_image(photos[0]))
    sheet = figures.progression(run, [7], photos, [], 48, 40, torch.device("cpu"))
    cell = torch.from_numpy(np.array(sheet)).permute(2, 0, 1)[None].float() / 255
    x0 = 4 + 48 + 4
    got = cell[..., figures.LABEL_H + 4: figures.LABEL_H + 4 + 40, x0: x0 + 48]
    assert got.shape[-2:] == expect.shape[-2:]
    assert (got - expect).abs().max() < 2 / 255 + 1e-3  # 8-bit rounding of the sheet

    # with postprocess "none" the column is G's output as it leaves G, whatever the file carries
    raw = Decoder(ref, device="cpu", precision="fp32", postprocess="none").decode(io.load_image(photos[0]))
    assert (raw - expect).abs().max() > 0.05  # auto (minmax here) differs from the raw output
    sheet = figures.progression(run, [7], photos, [], 48, 40, torch.device("cpu"), postprocess="none")
    cell = torch.from_numpy(np.array(sheet)).permute(2, 0, 1)[None].float() / 255
    got = cell[..., figures.LABEL_H + 4: figures.LABEL_H + 4 + 40, x0: x0 + 48]
    assert (got - raw).abs().max() < 2 / 255 + 1e-3

    with pytest.raises(figures.InputError, match="checkpoint-000009"):
        figures.progression(run, [9], photos, [], 48, 40, torch.device("cpu"))


def test_bad_input_is_one_line(figures, tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    fig = tmp_path / "f.png"
    cases = [
        ["columns", "--photos", str(tmp_path / "missing.png"), "--out", str(fig)],
        ["columns", "--photos", str(photos[0]), "--column", "A=" + str(tmp_path / "nowhere"), "--out", str(fig)],
        ["columns", "--photos", str(photos[0]), "--column", "A=" + str(tmp_path / "photos" / ".."), "--out",
         str(fig)],  # a folder without p0's output
        ["progression", "--run", str(tmp_path), "--steps", "1", "--photos", str(photos[0]), "--out", str(fig)],
        ["progression", "--run", str(tmp_path), "--steps", "a,b", "--photos", str(photos[0]), "--out", str(fig)],
    ]
    for argv in cases:
        assert figures.main(argv) != 0, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1, (argv, err)
        assert not fig.exists()
