"""The model zoo (mgan.zoo): bundled models and their cards, name lookup, --list-models / --style
in mgan.decode, card writing, and no absolute path in any release metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mgan import decode, io, zoo
from mgan.generator import Generator, GeneratorConfig, load_release, save_release

ROOT = Path(__file__).resolve().parent.parent  # the checkout: docs/ and card pictures live here, not in the package


def _metadata_values(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {k: json.loads(v) if k != "format" else v for k, v in meta.items()}


@pytest.fixture
def tiny_release(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_release(Generator(GeneratorConfig(channels=(16, 8, 8))), tmp_path / "mine.safetensors",
                        extra={"experiment": {"data_root": "/home/someone/data", "style": "style/x.jpg"}})


# ----------------------------------------------------------------------------- bundled models


def test_bundled_models_include_the_default():
    models = zoo.bundled()
    assert "picasso" in models and models["picasso"] == decode.DEFAULT_MODEL
    assert zoo.resolve("picasso") == decode.DEFAULT_MODEL
    assert zoo.resolve(" Picasso.safetensors") == decode.DEFAULT_MODEL


@pytest.mark.parametrize("name", sorted(zoo.bundled()))
def test_every_bundled_model_has_its_card_and_no_absolute_path(name):
    path = zoo.bundled()[name]
    card = zoo.read_card(path)
    assert zoo.missing_fields(card) == [], f"{name}: card lacks {zoo.missing_fields(card)}"
    assert zoo.absolute_paths(_metadata_values(path)) == []
    assert (ROOT / card["picture"]).is_file()
    assert (ROOT / "docs" / "models" / f"{name}.md").is_file()
    # fp16: the paper's G is 7.3 MiB, picasso's with two residual blocks of width 128 11.8 MiB
    assert path.stat().st_size <= 12 * 2**20
    load_release(path)  # still a loadable generator
    # it carries its painting's colours, so decoding matches them by default (docs/decoding.md)
    assert decode.Decoder(path, device="cpu", precision="fp32", tile=None).postprocess == "match"


def test_picasso_card_says_it_is_not_public_domain_everywhere():
    card = zoo.read_card(zoo.resolve("picasso"))
    assert card["painter"] == "Pablo Picasso" and "1907" in str(card["year"])
    assert "not public domain" in card["licence"].lower()


@pytest.mark.parametrize("name", sorted(set(zoo.bundled()) - {"picasso"}))
def test_zoo_models_are_public_domain_and_say_how_they_were_trained(name):
    card = zoo.read_card(zoo.resolve(name))
    assert "public domain" in card["licence"].lower() and "not public domain" not in card["licence"].lower()
    assert "experiments/zoo.yaml" in card["notes"] and card["photos"] == 20 and card["steps"] == 600
    assert card["metrics"]["swd_mean"] > 0


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(io.InputError, match=r"unknown style 'starry'.*picasso"):
        zoo.resolve("starry")
    assert set(zoo.bundled()) >= {"picasso", "starry_night", "wave", "the_scream", "composition_vii", "shipwreck"}


def test_listing_has_one_line_per_model():
    lines = zoo.listing()
    assert len(lines) == len(zoo.bundled())
    line = next(ln for ln in lines if ln.startswith("picasso"))
    assert "Pablo Picasso" in line and " MB" in line and "not public domain" in line.lower()


# ----------------------------------------------------------------------------- decode CLI


def test_decode_list_models(capsys):
    assert decode.main(["--list-models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(zoo.bundled()) and out[0].split()[0] in zoo.bundled()


def test_decode_by_style_name(tmp_path, synthetic_image, capsys):
    photo = tmp_path / "p.png"
    io.save_image(synthetic_image, photo)
    argv = ["--style", "picasso", "--input", str(photo), "--out", str(tmp_path / "o.png"), "--precision", "fp32"]
    assert decode.main([*argv, "--dry-run"]) == 0
    assert "picasso.safetensors" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--style", "vermeer"], "unknown style 'vermeer'; bundled models: " + ", ".join(sorted(zoo.bundled()))),
        (["--style", "picasso", "--model", "{mine}"], "not both"),
    ],
)
def test_decode_bad_style_exits_2_with_one_line(tmp_path, tiny_release, capsys, argv, message):
    argv = [a.replace("{mine}", str(tiny_release)) for a in argv]
    assert decode.main([*argv, "--noise", "perlin", "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_decode_user_release_by_path_still_works(tmp_path, tiny_release):
    out = tmp_path / "o.png"
    assert decode.main(["--model", str(tiny_release), "--noise", "brown", "--size", "32", "--precision", "fp32",
                        "--quiet", "--out", str(out)]) == 0
    assert out.is_file()


# ----------------------------------------------------------------------------- writing cards


def test_scrub_paths():
    obj = {"a": "/home/someone/data", "b": ["style/x.jpg", "~/y.png", "C:\\data\\z.png"], "c": 3, "d": "text"}
    assert zoo.scrub_paths(obj) == {"a": "data", "b": ["style/x.jpg", "y.png", "z.png"], "c": 3, "d": "text"}
    assert zoo.absolute_paths(zoo.scrub_paths(obj)) == []
    assert zoo.absolute_paths(obj) == ["/home/someone/data", "~/y.png", "C:\\data\\z.png"]


def test_write_card_keeps_the_tensors_and_scrubs_paths(tiny_release, tmp_path):
    before = load_file(str(tiny_release))
    zoo.write_card(tiny_release, {"title": "T", "painter": "P", "source": "/abs/style/t.jpg"})
    zoo.write_card(tiny_release, {"year": "1900"})  # merges
    after = load_file(str(tiny_release))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    card = zoo.read_card(tiny_release)
    assert card == {"title": "T", "painter": "P", "source": "t.jpg", "year": "1900"}
    assert zoo.absolute_paths(_metadata_values(tiny_release)) == []  # extra's data_root too
    with pytest.raises(io.InputError, match="unknown card field"):
        zoo.write_card(tiny_release, {"colour": "blue"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.safetensors"]  # no temp file left


def test_training_card_has_the_training_fields():
    experiment = {"name": "x", "data_root": "/home/a/data", "style": "/home/a/data/style/s.jpg",
                  "mdan": {"size": 64, "iterations": 2}, "crops": {"size": 32, "stride": 16},
                  "model": {"channels": [16, 8, 8]}, "train": {"batch": 8, "lr": 0.02, "precision": "fp32"}}
    card = zoo.training_card(experiment, photos=3, steps=4, wall_time_s=12.345, device="cpu")
    assert set(zoo.TRAINING_FIELDS) <= set(card) and card["steps"] == 4 and card["wall_time_s"] == 12.3
    assert card["config"]["style"] == "s.jpg" and zoo.absolute_paths(card) == []
    assert "threads" in card["cpu"]


def test_card_names_the_mdan_schedule_of_the_targets():
    """A coarse stage and a non-default lr change the targets G learns from: the card says so."""
    def summary(mdan: dict) -> str:
        return zoo.config_summary({"mdan": mdan})["mdan"]

    assert summary({"size": 384, "iterations": 125}) == "384 px, 125 iterations"
    assert summary({"size": 384, "iterations": 125, "coarse_iterations": 0, "lr": 0.02}) == "384 px, 125 iterations"
    assert (summary({"size": 256, "iterations": 40, "coarse_iterations": 40, "coarse_scale": 0.5, "lr": 0.045})
            == "256 px, 40 iterations at 0.5x + 40, lr 0.045")
    assert summary({"size": 256, "iterations": 125, "guided_init": "photo"}) == "256 px, 125 iterations"
    assert (summary({"size": 256, "iterations": 125, "lr": 0.045, "guided_init": "match"})
            == "256 px, 125 iterations, lr 0.045, from the photo in the style's colours")


def test_card_names_blocks_averaging_and_the_noise_content_weight():
    """Residual blocks, weight averaging and the noise targets' content weight change the G a
    recipe makes: the card says so, and says nothing of them for the paper's G."""
    paper = zoo.config_summary({"model": {"channels": [512, 256, 128], "blocks": 0},
                                "train": {"average_start": None, "average_every": 100},
                                "noise": {"count": 2, "size": 64, "scale": 32.0, "per_batch": 4, "start_step": 2,
                                          "content_weight": None}})
    assert "generator_blocks" not in paper and "weight_average" not in paper
    assert paper["noise_pairs"] == "2 Perlin images of 64 px at 32 px scale, 4 crops a step from step 2"
    ours = zoo.config_summary({"model": {"channels": [512, 256, 128], "blocks": 2, "block_width": 128},
                               "train": {"average_start": 1200, "average_every": 100},
                               "noise": {"count": 2, "size": 64, "scale": 32.0, "per_batch": 4, "start_step": 2,
                                         "content_weight": 0.0}})
    assert ours["generator_blocks"] == "2 residual blocks of width 128 after the first conv"
    assert ours["weight_average"] == "mean of G's weights at step 1200, every 100 steps after it and the last"
    assert ours["noise_pairs"].endswith(", MDAN content weight 0")
    full_width = zoo.config_summary({"model": {"channels": [512, 256, 128], "blocks": 1, "block_width": None}})
    assert full_width["generator_blocks"] == "1 residual block of width 512 after the first conv"


def test_zoo_cli(tiny_release, tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"config": {"eval_size": 256}, "photos": ["/x/a.jpg"],
                                   "mean": {"mgan": {"swd_mean": 0.5, "content": 0.25, "other": 1}}}))
    assert zoo.main(["set", str(tiny_release), "--set", "year=1889", "--set", "title=Night",
                     "--metrics", str(results)]) == 0
    assert "still missing" in capsys.readouterr().out
    card = zoo.read_card(tiny_release)
    assert card["year"] == 1889 and card["metrics"] == {"swd_mean": 0.5, "content": 0.25, "photos": ["a.jpg"],
                                                        "eval_size": 256}
    assert zoo.main(["show", str(tiny_release)]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Night"
    page = tmp_path / "mine.md"
    assert zoo.main(["page", str(tiny_release), "--out", str(page)]) == 0
    assert "Night" in page.read_text() and "| swd_mean |" in page.read_text()
    assert zoo.main(["list"]) == 0 and "picasso" in capsys.readouterr().out
    assert zoo.main(["show", "nosuch"]) == 2
    assert zoo.main(["set", str(tiny_release)]) == 2
    assert zoo.main(["set", str(tiny_release), "--metrics", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


def test_card_pages_are_up_to_date():
    """docs/models/<name>.md is generated from the card; regenerate it after changing the card."""
    for name, path in zoo.bundled().items():
        page = ROOT / "docs" / "models" / f"{name}.md"
        assert page.read_text() == zoo.card_page(name, path), f"run: python -m mgan.zoo page {name} --out {page}"


def test_zoo_colour_stores_the_paintings_moments(tiny_release, tmp_path, capsys, synthetic_image):
    from mgan import colour

    g = tmp_path / "g.safetensors"
    g.write_bytes(tiny_release.read_bytes())
    painting = io.save_image(synthetic_image, tmp_path / "painting.png")
    assert zoo.main(["colour", str(g), str(painting), "--size", "32"]) == 0
    _, extra = load_release(g)
    want = colour.moments(io.load_image(painting, max_side=32))
    for got, ref in zip(colour.moments_from_json(extra[decode.STYLE_COLOUR_KEY]), want, strict=True):
        torch.testing.assert_close(got, ref)
    assert load_file(str(g)).keys() == load_file(str(tiny_release)).keys()  # tensors kept
    capsys.readouterr()
    assert zoo.main(["colour", str(g), str(tmp_path / "missing.png")]) == 2
    assert zoo.main(["colour", str(g), str(painting), "--size", "4"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


@pytest.mark.parametrize("bad", [{"mean": [0.5, 0.5], "cov": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
                                 {"mean": [0.5, 0.5, 2.0], "cov": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
                                 {"mean": [0.5, 0.5, 0.5], "cov": [[1, 2, 0], [0, 1, 0], [0, 0, 1]]},
                                 "not moments"])
def test_bad_style_colour_metadata_is_a_clear_error(tiny_release, tmp_path, bad):
    G, extra = load_release(tiny_release)
    path = save_release(G, tmp_path / "bad.safetensors", extra={**extra, decode.STYLE_COLOUR_KEY: bad})
    with pytest.raises(io.InputError, match="style_colour"):
        decode.Decoder(path, device="cpu")
