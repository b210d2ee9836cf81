"""Optional dependencies (mgan.extras): a feature whose extra is missing says which one, in one line.

A missing package is simulated with ``sys.modules[name] = None``, which makes ``import name``
raise ``ModuleNotFoundError`` exactly as an absent package does.
"""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

import pytest

from mgan import decode, extras, noise

ROOT = Path(__file__).resolve().parent.parent


def _names(requirements: str) -> set[str]:
    """Package names of a setup.cfg requirement list (``torch>=2.1`` -> ``torch``)."""
    return {re.split(r"[<>=!~;\[ ]", line.strip())[0] for line in requirements.splitlines() if line.strip()}


def test_each_optional_package_is_its_extra_and_in_dev():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    declared = {extra: _names(reqs) for extra, reqs in cfg["options.extras_require"].items()}
    for module, extra in extras.EXTRA_OF.items():
        assert module in declared[extra], (module, extra)
    assert not set(extras.EXTRA_OF) & _names(cfg["options"]["install_requires"])  # optional, not required
    assert {"av", "wandb", "noise"} <= declared["dev"]  # the tests exercise them: pip install -e ".[dev]" brings them


def test_require_returns_the_module():
    assert extras.require("noise", "test") is sys.modules["noise"]


@pytest.mark.parametrize(("module", "extra"), sorted(extras.EXTRA_OF.items()))
def test_missing_package_names_its_extra(module, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(extras.MissingExtraError) as exc:
        extras.require(module, "this feature")
    message = str(exc.value)
    assert len(message.splitlines()) == 1 and f"pip install 'mgan[{extra}]'" in message and "this feature" in message
    assert isinstance(exc.value, decode.io.InputError)  # so every CLI prints it as one error line, status 2


def test_a_broken_install_keeps_its_own_error(monkeypatch):
    """Only an absent package is reported as a missing extra; a failing import inside it is not."""

    def broken(name, *args, **kwargs):
        raise ImportError("libfoo.so: cannot open shared object file", name="av._core")

    monkeypatch.setattr(extras.importlib, "import_module", broken)
    with pytest.raises(ImportError, match="libfoo") as exc:
        extras.require("av", "video input")
    assert not isinstance(exc.value, extras.MissingExtraError)


def test_decode_of_a_video_without_av_is_one_line(tmp_path, monkeypatch, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "av", None)
    status = decode.main(["--input", str(clip), "--out", str(tmp_path / "out.mp4"), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert status == 2 and err == ["error: video input needs the optional package 'av': pip install 'mgan[video]'"]
    assert not (tmp_path / "out.mp4").exists()


def test_perlin_noise_backend_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "noise", None)
    with pytest.raises(extras.MissingExtraError, match=r"mgan\[noise\]"):
        noise.perlin(8, 8, backend="noise")
    assert noise.perlin(8, 8).shape[-2:] == (8, 8)  # the default (vectorised) backend needs nothing
