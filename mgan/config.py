"""Dataclass configs: YAML load/dump, ``--set key=value`` overrides, validation.

One YAML file maps to one dataclass (nested dataclasses for sections). Unknown keys,
wrong types and impossible values raise :class:`~mgan.errors.ConfigError` (a
``ValueError``, re-exported here) naming the key; CLIs turn it into a usage error (exit 2).
A key with a fixed set of values is annotated ``Literal[...]``: :func:`from_dict` checks it
on load, and :func:`check_choices` (called by ``validate()``) for a config built in code.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

from mgan.errors import ConfigError

T = TypeVar("T", bound="DataclassInstance")


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Coerce/validate ``value`` against annotation ``tp``; return the value to store."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        out = [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    # An annotation naming a dataclass is the class itself, never an instance of one.
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (mapping), got {type(value).__name__}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            raise ConfigError(f"{key}: number out of range, got {value}") from None
        if not math.isfinite(value):  # nan passes every `<= 0` check of validate(); inf is no setting
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types.

    Calls ``validate()`` on the result when the class defines it.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' (valid: {', '.join(sorted(fields))})")
    kwargs = {name: _check_type(value, hints[name], prefix + name) for name, value in data.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc}" if prefix and not str(exc).startswith(prefix) else str(exc)) from None
    return obj


def check_choices(obj: Any, prefix: str = "") -> None:
    """ConfigError naming the key unless every ``Literal[...]`` field of dataclass ``obj`` holds one of its values.

    :func:`from_dict` already refuses other values on load; ``validate()`` calls this so a
    config constructed in code (``GatysConfig(pooling="mean")``) gets the same one line
    (``pooling: must be one of ['max', 'avg'], got 'mean'``).
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        tp = hints[f.name]
        if typing.get_origin(tp) is typing.Literal:
            _check_type(getattr(obj, f.name), tp, prefix + f.name)


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain dict of YAML-safe values (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(obj)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value")
        try:
            value = safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        except RecursionError:
            raise ConfigError(f"override {key.strip()}=...: nested too deeply") from None
        check_size(value, f"override {key.strip()}=...")
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
        node[parts[-1]] = value
    return data


MAX_VALUES = 100_000  # values a config may expand to (aliases counted every time they are used)
MAX_CONFIG_BYTES = 1 << 20


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: construct_mapping reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads ``5e-6`` as a string: its floats need a dot (``5.0e-6``). YAML 1.2 and
# every user reading a config take it for a number, so exponent floats without a dot are floats here.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (see :class:`_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def check_size(data: Any, where: str, limit: int = MAX_VALUES) -> None:
    """ConfigError if ``data`` expands to more than ``limit`` values, or refers to itself.

    YAML aliases share one Python object, so a 1 kB file of nested aliases (a "billion
    laughs") is small in memory but expands to 2^100 values for every walk over it (key
    checks, type checks, dumps): it would run for hours. The count is memoised per
    object, so this check itself is linear in the file.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(v: Any) -> int:
        if not isinstance(v, (dict, list)):
            return 1
        if id(v) in sizes:
            return sizes[id(v)]
        if id(v) in active:
            raise ConfigError(f"{where}: a YAML alias refers to itself")
        active.add(id(v))
        n = 1 + sum(size(x) for x in (v.values() if isinstance(v, dict) else v))
        active.discard(id(v))
        sizes[id(v)] = n
        if n > limit:
            raise ConfigError(f"{where}: expands to more than {limit} values (nested YAML aliases?); refused")
        return n

    try:
        size(data)
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply") from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file.

    Refused with one line: a missing or non-regular file, more than 1 MB, a syntax
    error, a key given twice in one mapping, aliases expanding to more than
    :data:`MAX_VALUES` values, nesting deeper than Python's recursion limit.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise ConfigError(f"config file not found: {path}") from None
    if not stat.S_ISREG(st.st_mode):  # a folder, or a pipe or device that would block or never end
        raise ConfigError(f"config file {path} is not a regular file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {st.st_size} bytes is too large for a config file")
    try:
        data = safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: YAML does not parse{where}: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (YAML) file") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys to values")
    check_size(data, str(path))
    _check_keys(data, path)
    return data


def _check_keys(data: dict[Any, Any], path: Path, prefix: str = "") -> None:
    """Every key of every section must be a string (YAML reads ``1:``, ``yes:``, ``null:`` as others)."""
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{path}: key {prefix}{key!r} must be a string (a config key name)")
        if isinstance(value, dict):
            _check_keys(value, path, f"{prefix}{key}.")


def dump_yaml(obj: Any) -> str:
    """Dataclass or dict -> YAML text (key order kept)."""
    return yaml.safe_dump(to_dict(obj) if dataclasses.is_dataclass(obj) else obj, sort_keys=False)
