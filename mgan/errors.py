"""The exceptions a user can cause, and the one line a CLI prints for each.

Every CLI (:func:`mgan.cli.run`) turns these three into ``error: <message>`` and exit
status 2; anything else is a bug and keeps its traceback. They live here, below every
other module, so that a module can raise them without importing the one that used to
define them (``mgan.io``, ``mgan.config`` and ``mgan.vgg`` still re-export them).
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (file, folder, option value); the message is one line for the user."""


class ConfigError(ValueError):
    """A config key, type or value is wrong; the message names the key."""


class WeightsError(RuntimeError):
    """The VGG-19 weights could not be found or do not fit the network."""


def one_line(exc: BaseException) -> str:
    """The first non-empty line of ``str(exc)``, stripped (the exception's type name if there is none).

    Some messages wrap multi-line library text (``torch.load``'s ``weights_only``
    refusal is a paragraph, ``load_state_dict`` lists every key); the contract is one
    line per error.
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
