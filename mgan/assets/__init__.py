"""Bundled assets, shipped as package data: the default style image and the released generators.

Every file mgan reads at run time without the user naming it lives in this folder
(``mgan/assets/``) and is found through :func:`asset_path`, never through a path relative
to the checkout, so an installed wheel finds them as an editable checkout does.
``setup.cfg`` (``[options.package_data]``) puts them into the wheel; ``tests/test_packaging.py``
checks that it does.

    default_style.png      MDAN's default ``--style`` (made by ``assets/make_default_style.py``)
    <name>.safetensors     bundled generators (:mod:`mgan.zoo`); ``picasso`` is the default model
    perceptual_sr4.pt      the x4 super-resolution network (:mod:`mgan.perceptual`, name ``sr4``)
    perceptual_<style>.pt  Johnson et al. style networks (names ``picasso``, ``starry_night``)

Nothing heavy is imported here: ``mgan --help`` and the zoo's listing stay fast.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _folder() -> Path:
    """This package's folder on disk.

    ``importlib.resources`` returns a real path for a package installed as files (a wheel,
    an editable checkout). Only a zip import gives something else, and the generators
    are read by libraries (safetensors, PIL) that need a file name, so that is refused
    in one line rather than failing later with a confusing message.
    """
    root = resources.files(__name__)
    if not isinstance(root, Path):
        raise RuntimeError(f"mgan's assets are not files on disk ({root!r}); install mgan unzipped (pip install)")
    return root


ASSETS: Path = _folder()
DEFAULT_STYLE_NAME = "default_style.png"
DEFAULT_MODEL_NAME = "picasso.safetensors"


def asset_path(name: str) -> Path:
    """The path of the bundled asset ``name`` (a file name in ``mgan/assets/``); it may not exist."""
    return ASSETS / name


__all__ = ["ASSETS", "DEFAULT_MODEL_NAME", "DEFAULT_STYLE_NAME", "asset_path"]
