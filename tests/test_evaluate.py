"""Evaluation metrics (style SWD, Gram, patch coherence, content), the table, the page and the CLI."""

import json

import pytest
import torch

from mgan import decode, evaluate, io
from mgan.errors import ConfigError
from mgan.evaluate import EvalConfig, Scorer


@pytest.fixture
def cfg() -> EvalConfig:
    return EvalConfig(size=64, eval_size=64, style_size=64, projections=32)


def test_style_scored_against_itself_is_zero(encoder, synthetic_image, cfg):
    scorer = Scorer(synthetic_image, cfg, encoder=encoder)
    row = scorer.score(synthetic_image, synthetic_image)
    assert row["swd_mean"] < 1e-4 and row["gram"] < 1e-4
    assert row["coherence"] < 2e-3 and row["content"] < 1e-8  # fp32 rounding of |q|^2 - 2qk + |k|^2
    assert row["coherence_ncc"] < 1e-4


def test_metrics_grow_with_distortion(encoder, synthetic_image, cfg):
    scorer = Scorer(synthetic_image, cfg, encoder=encoder)
    g = torch.Generator().manual_seed(0)
    noisy = (synthetic_image + 0.3 * torch.randn(synthetic_image.shape, generator=g)).clamp(0, 1)
    shuffled = synthetic_image[..., torch.randperm(64, generator=g)]  # same colours, scrambled columns
    clean, bad, scrambled = (scorer.score(x, synthetic_image) for x in (synthetic_image, noisy, shuffled))
    for key in ("swd_mean", "gram", "coherence", "coherence_ncc", "content"):
        assert bad[key] > clean[key]
    # column scrambling keeps the pixel colours but destroys the local patches
    assert scrambled["coherence"] > clean["coherence"] + 0.05


def test_cli_scores_folders_and_writes_page(tmp_path, encoder, synthetic_image, monkeypatch, capsys):
    monkeypatch.setattr(evaluate, "VGG19Encoder", lambda *a, **k: encoder)
    style, photos = tmp_path / "style.png", []
    io.save_image(synthetic_image, style)
    for i in range(2):
        photos.append(tmp_path / f"photo{i}.png")
        io.save_image(synthetic_image.roll(16 * i, -1), photos[-1])
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, shift in ((a, 3), (b, 30)):
        folder.mkdir()
        for p in photos:
            io.save_image(io.load_image(p).roll(shift, -2), folder / f"{p.stem}.png")
    (a / "times.json").write_text(json.dumps({"photo0": 0.5, "photo1": 1.5}))
    out = tmp_path / "eval"
    rc = evaluate.main(["--style", str(style), "--photos", *map(str, photos), "--method", f"gatys={a}",
                        "--method", f"cnnmrf={b}", "--out", str(out), "--size", "64", "--eval-size", "64",
                        "--style-size", "64", "--projections", "16", "--device", "cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| Gatys |" in text and "| CNNMRF |" in text and "| photo (input) |" in text and "1.0 s" in text
    results = json.loads((out / "results.json").read_text())
    assert set(results["per_photo"]) == {"photo", "gatys", "cnnmrf"}
    page = (out / "index.html").read_text()
    assert "page/gatys_photo1.png" in page and (out / "page" / "gatys_photo1.png").is_file()
    assert "![cnnmrf photo0](page/cnnmrf_photo0.png)" in (out / "page.md").read_text()


def test_cli_rejects_bad_input(tmp_path, capsys, synthetic_image):
    style = tmp_path / "s.png"
    io.save_image(synthetic_image, style)
    base = ["--style", str(style), "--photos", str(style), "--out", str(tmp_path / "o")]
    assert evaluate.main(base) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert evaluate.main([*base, "--method", f"x={tmp_path / 'missing'}"]) == 2
    assert "folder not found" in capsys.readouterr().err
    assert evaluate.main([*base, "--generate", "gatys,magic"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert evaluate.main([*base, "--generate", "gatys,perceptual"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--perceptual-checkpoint" in err and err.startswith("error:") and len(err.splitlines()) == 1
    assert evaluate.main([*base, "--method", f"x={tmp_path}", "--size", "100"]) == 2
    assert "multiple of 8" in capsys.readouterr().err
    assert evaluate.main([*base, "--method", f"x={tmp_path}", "--mgan-postprocess", "bogus"]) == 2
    assert "mgan_postprocess" in capsys.readouterr().err


def test_generate_mgan_with_its_post_process(tmp_path, tiny_release, synthetic_image):
    """The MGAN column decodes with the decoder's post-process (auto: minmax for a G without
    painting colours), or G's output as it is with ``mgan_postprocess="none"``, and with the
    decoder's border margin (``mgan_margin``); the note says which."""
    photo = io.save_image(synthetic_image, tmp_path / "p.png")
    outs = {}
    for pp, margin in (("auto", 32), ("none", 32), ("none", 0)):
        cfg = evaluate.EvalConfig(size=64, eval_size=64, style_size=64, mgan_postprocess=pp, mgan_margin=margin)
        folder, note = evaluate.generate("mgan", [photo], synthetic_image, tmp_path / f"{pp}{margin}", cfg,
                                         torch.device("cpu"), mgan_model=tiny_release, progress=False)
        want = {"auto": "post-process minmax", "none": "post-process none"}[pp] + f", border margin {margin} px)"
        assert note.endswith(want), note
        outs[pp, margin] = io.load_image(folder / "p.png")
    assert outs["auto", 32].shape == outs["none", 32].shape == synthetic_image.shape
    assert outs["none", 32].std() < outs["auto", 32].std()  # the tiny G's raw output is low-contrast; minmax spreads it
    assert (outs["none", 32] - outs["none", 0]).abs().max() > 1e-2  # the margin reaches the decode
    assert evaluate.EvalConfig().mgan_margin == decode.MARGIN  # the decoder's default, written twice
    with pytest.raises(ConfigError, match="mgan_margin"):
        evaluate.EvalConfig(mgan_margin=-1).validate()
