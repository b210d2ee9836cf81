"""``--precision auto``: bf16 only where the hardware has it, on every kind of machine (probe patched)."""

from __future__ import annotations

import argparse

import pytest
import torch

from mgan import precision
from mgan.config import ConfigError
from mgan.generator import Generator, GeneratorConfig, save_release

SMALL = GeneratorConfig(channels=(16, 8, 8))


@pytest.fixture
def no_bf16(monkeypatch):
    """An AVX2-only CPU (or a pre-Ampere GPU): no native bf16."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)


@pytest.fixture
def has_bf16(monkeypatch):
    """An AVX-512-bf16 / AMX CPU (or an Ampere+ GPU): native bf16."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)


# ----------------------------------------------------------------------------- the probe


@pytest.mark.parametrize("onednn_says", [True, False])
def test_cpu_probe_follows_onednn(monkeypatch, onednn_says):
    monkeypatch.delenv(precision.FORCE_NO_BF16, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn_says)
    assert precision.native_bf16("cpu") is onednn_says
    assert precision.resolve("auto", "cpu") == ("bf16" if onednn_says else "fp32")


@pytest.mark.parametrize(("major", "native"), [(7, False), (8, True), (9, True)])
def test_cuda_probe_needs_compute_capability_8(monkeypatch, major, native):
    """Pre-Ampere GPUs emulate bf16 through fp32 kernels: auto must not pick it there."""
    monkeypatch.delenv(precision.FORCE_NO_BF16, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (major, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.version, "hip", None)
    assert precision.native_bf16(torch.device("cuda:0")) is native
    chosen, reason = precision.resolve_precision("auto", torch.device("cuda:0"))
    assert chosen == ("bf16" if native else "fp32")
    assert "Fake GPU" in reason


def test_cuda_probe_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.native_bf16("cuda") is False


def test_force_no_bf16_env_simulates_avx2(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setenv(precision.FORCE_NO_BF16, "1")
    assert precision.native_bf16("cpu") is False
    chosen, reason = precision.resolve_precision("auto", "cpu")
    assert chosen == "fp32" and precision.FORCE_NO_BF16 in reason
    monkeypatch.setenv(precision.FORCE_NO_BF16, "0")
    assert precision.native_bf16("cpu") is True


# ----------------------------------------------------------------------------- the choice


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_auto_picks_bf16_only_where_native(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the reason then names "device cuda"
    monkeypatch.setattr(precision, "native_bf16", lambda d: True)
    assert precision.resolve("auto", device) == "bf16"
    assert "has native bf16" in precision.describe("auto", device)
    monkeypatch.setattr(precision, "native_bf16", lambda d: False)
    chosen, reason = precision.resolve_precision("auto", device)
    assert chosen == "fp32" and "no native bf16" in reason and "emulated" in reason


def test_log_line_names_cpu_kind(no_bf16, monkeypatch):
    monkeypatch.delenv(precision.FORCE_NO_BF16, raising=False)  # it would add a note
    monkeypatch.setattr(precision, "cpu_kind", lambda: "AVX2")
    assert precision.describe("auto", "cpu") == (
        "precision: fp32 (auto: this CPU (AVX2) has no native bf16; bf16 would be emulated and slow)")


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_explicit_choice_is_honoured(monkeypatch, native, name):
    monkeypatch.setattr(precision, "native_bf16", lambda d: native)
    chosen, reason = precision.resolve_precision(name, "cpu")
    assert chosen == name and reason.startswith("requested")
    # asking for emulated bf16 is allowed, but the line warns
    assert ("emulated" in reason) == (name == "bf16" and not native)


def test_unknown_precision_refused():
    with pytest.raises(ValueError, match="fp16"):
        precision.resolve("fp16", "cpu")
    with pytest.raises(ConfigError, match="train.precision.*fp16"):
        precision.check("fp16", "train.precision")


def test_announce_prints_one_stderr_line(no_bf16, capsys):
    assert precision.announce("auto", "cpu") == "fp32"
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("precision: fp32 (auto: ")


def test_cpu_kind_is_a_name():
    assert precision.cpu_kind() in ("AMX", "AVX-512-bf16", "AVX-512", "AVX2", "DEFAULT", "NO AVX", "VSX", "ZVECTOR",
                                    "SVE256", "SVE128", "SVE")


# ----------------------------------------------------------------------------- configs, engines, CLIs


def _configs():
    from mgan.cnnmrf import CNNMRFConfig
    from mgan.evaluate import EvalConfig
    from mgan.gatys import GatysConfig
    from mgan.mdan import MDANConfig
    from mgan.perceptual import PerceptualConfig
    from mgan.train import TrainConfig
    from mgan.visualize import InversionConfig, MaximizeConfig

    return [MDANConfig, GatysConfig, CNNMRFConfig, PerceptualConfig, TrainConfig, InversionConfig, MaximizeConfig,
            EvalConfig]


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__name__)
def test_every_config_defaults_to_auto_and_validates_it(cls):
    assert cls().precision == "auto"
    for ok in precision.CHOICES:
        cls(precision=ok).validate()
    with pytest.raises(ConfigError, match="precision"):
        cls(precision="fp16").validate()


def _precision_defaults(parser: argparse.ArgumentParser) -> list[str]:
    """The ``--precision`` defaults of a parser and its subcommands."""
    found = []
    for action in parser._actions:
        if action.dest == "precision":
            assert set(action.choices) >= {"auto", "fp32", "bf16"}
            found.append(action.default)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _precision_defaults(sub)
    return found


@pytest.mark.parametrize("module", ["mdan", "decode", "gatys", "cnnmrf", "perceptual", "visualize", "evaluate"])
def test_every_cli_defaults_to_auto(module):
    import importlib

    defaults = _precision_defaults(importlib.import_module(f"mgan.{module}")._parser())
    assert defaults and set(defaults) == {"auto"}


def test_experiment_configs_use_auto():
    from conftest import ROOT

    from mgan.train import load_config

    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        cfg = load_config(path, [])
        assert (cfg.train.precision, cfg.mdan.precision) == ("auto", "auto"), path.name


def test_train_resolves_auto_before_keys_and_config(no_bf16):
    """The run folder records what ran: ``auto`` becomes ``fp32`` here; explicit values stay."""
    from mgan.train import ExperimentConfig, TrainConfig, resolve_precision

    cfg = resolve_precision(ExperimentConfig(), torch.device("cpu"))
    assert (cfg.mdan.precision, cfg.train.precision) == ("fp32", "fp32")
    cfg = resolve_precision(ExperimentConfig(train=TrainConfig(precision="bf16")), torch.device("cpu"))
    assert (cfg.mdan.precision, cfg.train.precision) == ("fp32", "bf16")


@pytest.mark.parametrize(("native", "want", "dtype"), [(False, "fp32", torch.float32), (True, "bf16", torch.bfloat16)])
def test_decoder_resolves_auto_at_construction(monkeypatch, native, want, dtype):
    from mgan.decode import Decoder

    monkeypatch.setattr(precision, "native_bf16", lambda d: native)
    torch.manual_seed(0)
    dec = Decoder(Generator(SMALL), device="cpu", precision="auto", tile=None)
    assert dec.precision == want
    assert {p.dtype for p in dec.pipeline.parameters()} == {dtype}


@pytest.mark.parametrize(("native", "want"), [(False, "fp32"), (True, "bf16")])
def test_mdan_resolves_auto_at_construction(monkeypatch, native, want):
    from mgan.mdan import MDAN, MDANConfig
    from mgan.vgg import VGG19Encoder

    monkeypatch.setattr(precision, "native_bf16", lambda d: native)
    enc = VGG19Encoder(("relu3_1", "relu5_1"), precision="fp32")
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    m = MDAN(style, MDANConfig(size=32, style_size=32, angles=(0.0,), scales=(1.0,), flip=False, d_hidden=8),
             encoder=enc)
    assert m.precision == want
    with m._autocast():  # D runs under bf16 autocast exactly when bf16 was chosen
        y = torch.nn.functional.linear(torch.ones(1, 4), torch.ones(2, 4))
    assert y.dtype == (torch.bfloat16 if native else torch.float32)


def test_decode_cli_logs_the_choice(no_bf16, monkeypatch, tmp_path, capsys):
    from mgan import decode

    monkeypatch.setattr(precision, "cpu_kind", lambda: "AVX2")
    torch.manual_seed(0)
    model = save_release(Generator(SMALL), tmp_path / "g.safetensors")
    out = tmp_path / "o.png"
    argv = ["--model", str(model), "--noise", "perlin", "--size", "64", "--out", str(out), "--device", "cpu"]
    assert decode.main([*argv, "--dry-run"]) == 0
    assert "on cpu (fp32" in capsys.readouterr().out and not out.exists()
    assert decode.main(argv) == 0 and out.is_file()
    assert "precision: fp32 (auto: this CPU (AVX2) has no native bf16" in capsys.readouterr().err
    assert decode.main([*argv, "--quiet"]) == 0  # --quiet: nothing on stderr
    assert capsys.readouterr().err == ""


def test_precision_cli_prints_cpu_and_choice(no_bf16, capsys):
    assert precision.main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("CPU: ") and out[0].endswith("native bf16: no")
    assert out[1].startswith("precision: fp32 (auto: ")
    with pytest.raises(SystemExit) as exc:
        precision.main(["--device", "nonsense"])
    assert exc.value.code == 2
