"""Optional dependencies: each is an extra of the package, imported only by the feature that needs it.

``pip install mgan`` installs what decoding, MDAN, training and the baselines need. A few
features need more, declared as extras in ``setup.cfg``:

    package  extra     feature
    av       [video]   video input and output (mgan.decode on .mp4/.mov/...)
    wandb    [wandb]   Weights & Biases logging in mgan.train (``wandb.enabled``)
    noise    [noise]   the C ``noise`` package as Perlin backend (the vectorised one is the default)
    gradio   [app]     the web page, mgan.app

:func:`require` imports one of them, or raises :class:`MissingExtraError` (an
:class:`~mgan.errors.InputError`, so a CLI prints one ``error:`` line and exits 2) that names
the feature and the ``pip install`` line.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mgan.errors import InputError

# Python module -> the extra of setup.cfg that installs it (the names match the table above).
EXTRA_OF: dict[str, str] = {"av": "video", "wandb": "wandb", "noise": "noise", "gradio": "app"}


class MissingExtraError(InputError):
    """A feature needs an optional package that is not installed; the message says which extra installs it."""


def require(module: str, feature: str) -> ModuleType:
    """Import the optional package ``module`` for ``feature``.

    Args:
        module: a key of :data:`EXTRA_OF` (``"av"``, ``"wandb"``, ``"noise"``, ``"gradio"``).
        feature: what needs it, for the message (``"video input"``).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: ``module`` is not installed. A package that is installed but fails
            to import (a broken shared library) keeps its own error: reinstalling the extra
            would not be the fix.
    """
    extra = EXTRA_OF[module]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name != module:
            raise
        raise MissingExtraError(
            f"{feature} needs the optional package '{module}': pip install 'mgan[{extra}]'"
        ) from None


__all__ = ["EXTRA_OF", "MissingExtraError", "require"]
