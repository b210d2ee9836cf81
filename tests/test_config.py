"""Dataclass config loading: unknown keys, wrong types, impossible values, overrides."""

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from mgan.config import ConfigError, apply_overrides, check_choices, dump_yaml, from_dict, load_yaml
from mgan.mdan import MDANConfig


@dataclass
class Inner:
    lr: float = 0.1
    layers: tuple[str, ...] = ("a",)

    def validate(self):
        if self.lr <= 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")


@dataclass
class Outer:
    name: str = "x"
    steps: int = 1
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    opt: int | None = None


def test_from_dict_nested_and_coercion():
    c = from_dict(Outer, {"steps": 3, "inner": {"lr": 1, "layers": ["p", "q"]}, "opt": None})
    assert c.steps == 3 and c.inner.lr == 1.0 and isinstance(c.inner.lr, float) and c.inner.layers == ("p", "q")


@pytest.mark.parametrize(
    "data,match",
    [
        ({"stepz": 1}, "unknown config key 'stepz'"),
        ({"inner": {"lrr": 1}}, "unknown config key 'inner.lrr'"),
        ({"steps": "many"}, "steps: expected an integer"),
        ({"steps": 1.5}, "steps: expected an integer"),
        ({"flag": "yes"}, "flag: expected true/false"),
        ({"inner": {"lr": -1}}, "inner.lr: must be > 0"),
        ({"inner": 3}, "inner: expected a section"),
        ({"inner": {"layers": "abc"}}, r"inner.layers: expected a list"),
    ],
)
def test_errors_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(Outer, data)


def test_overrides_and_yaml(tmp_path):
    d = apply_overrides({"inner": {"lr": 0.1}}, ["inner.lr=0.5", "steps=7", "name=run"])
    c = from_dict(Outer, d)
    assert (c.inner.lr, c.steps, c.name) == (0.5, 7, "run")
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["novalue"])
    p = tmp_path / "c.yaml"
    p.write_text(dump_yaml(c))
    assert from_dict(Outer, load_yaml(p)) == c
    (tmp_path / "bad.yaml").write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match="does not parse"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    "data,match",
    [({"size": 100}, "multiple of 8"), ({"d_layer": "relu9_1"}, "d_layer"), ({"lr": 0}, "lr"),
     ({"d_input": "pixels"}, "d_input"), ({"beta1": 1.0}, "beta1")],
)
def test_mdan_config_validation(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(MDANConfig, data)


@dataclass
class Choosy:
    mode: Literal["a", "b"] = "a"
    name: str = "free"


def test_check_choices_refuses_what_from_dict_refuses():
    check_choices(Choosy("b"))
    with pytest.raises(ConfigError) as loaded:
        from_dict(Choosy, {"mode": "c"})
    with pytest.raises(ConfigError) as built:
        check_choices(Choosy("c"))
    assert str(built.value) == str(loaded.value) == "mode: must be one of ['a', 'b'], got 'c'"
    with pytest.raises(ConfigError, match="^opts.mode: must be one of"):
        check_choices(Choosy("c"), prefix="opts.")


def _choice_configs():
    from mgan.cnnmrf import CNNMRFConfig
    from mgan.gatys import GatysConfig
    from mgan.generator import GeneratorConfig
    from mgan.perceptual import PerceptualConfig
    from mgan.texture_nets import TextureNetsConfig
    from mgan.visualize import InversionConfig

    return [(GatysConfig, "pooling"), (GatysConfig, "init"), (GatysConfig, "optimizer"), (CNNMRFConfig, "init"),
            (MDANConfig, "d_input"), (MDANConfig, "postprocess"), (MDANConfig, "pooling"), (MDANConfig, "vgg_input"),
            (PerceptualConfig, "task"), (InversionConfig, "optimizer"), (TextureNetsConfig, "padding"),
            (GeneratorConfig, "pooling")]


def test_every_choice_key_is_checked_on_load_and_in_validate():
    for cls, key in _choice_configs():
        with pytest.raises(ConfigError, match=f"^{key}: must be one of .*, got 'bogus'$"):
            from_dict(cls, {key: "bogus"})
        with pytest.raises(ConfigError, match=f"^{key}: must be one of .*, got 'bogus'$"):
            dataclasses.replace(cls(), **{key: "bogus"}).validate()


def test_exponent_floats_without_a_dot_are_numbers():
    """PyYAML (YAML 1.1) reads ``5e-6`` as a string; configs and ``--set`` read it as the number
    a user means, in files and overrides alike, leaving plain YAML loading untouched."""
    import yaml

    from mgan.config import safe_load

    assert safe_load("a: 5e-6\nb: -2E+2\nc: 1.0e-4\nd: 12\ne: 5e\nf: e5") == {
        "a": 5e-6, "b": -200.0, "c": 1e-4, "d": 12, "e": "5e", "f": "e5"}
    assert apply_overrides({"x": {"w": 1.0}}, ["x.w=5e-6"]) == {"x": {"w": 5e-6}}
    assert yaml.safe_load("a: 5e-6") == {"a": "5e-6"}  # the global loader is not modified
