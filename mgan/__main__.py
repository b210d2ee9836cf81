"""The ``mgan`` command: one entry point for every mgan CLI (``mgan <command> [options]``).

``mgan decode ...`` runs ``python -m mgan.decode ...``: each command is the ``main(argv)``
of one module, given the rest of the command line, and its exit status is the command's.
``python -m mgan`` is the same command, and every ``python -m mgan.<module>`` keeps
working on its own.

The modules are imported only once a command is chosen: most import torch, which takes
seconds, and ``mgan --help`` or a mistyped command should answer at once.

Usage::

    mgan --help                       # the commands, one line each
    mgan decode --input photo.jpg --out out.png
    mgan mdan --help                  # a command's own options
"""

from __future__ import annotations

import difflib
import importlib
import sys

import mgan

# command -> (module whose main(argv) it runs, one line for `mgan --help`), in the order
# a newcomer meets them. tests/test_command.py checks that every module with a main()
# is here, so a new CLI cannot be left out.
COMMANDS: dict[str, tuple[str, str]] = {
    "decode": ("mgan.decode", "stylise photos, folders, videos or noise with a trained generator (seconds)"),
    "mdan": ("mgan.mdan", "MDAN adversarial deconvolution: one photo or texture, optimised (paper Sec. 3.1)"),
    "train": ("mgan.train", "train an MGAN generator: MDAN targets -> crops -> G (paper Sec. 3.2)"),
    "app": ("mgan.app", "a local web page over the decoder (needs the [app] extra)"),
    "zoo": ("mgan.zoo", "list the bundled generators, show or edit their model cards"),
    "evaluate": ("mgan.evaluate", "score MDAN, MGAN and the baselines side by side (SWD, Gram, coherence)"),
    "gatys": ("mgan.gatys", "baseline: Gatys et al. Gram texture synthesis and style transfer"),
    "cnnmrf": ("mgan.cnnmrf", "baseline: CNNMRF, MRF loss on VGG patches (Li & Wand, CVPR 2016)"),
    "perceptual": ("mgan.perceptual", "baseline: Johnson et al. feed-forward perceptual networks"),
    "sr_eval": ("mgan.sr_eval", "score super-resolution networks against bicubic (PSNR, SSIM, relu2_2 distance)"),
    "texture_nets": ("mgan.texture_nets", "baseline: Texture Networks, feed-forward Gram synthesis (Ulyanov et al.)"),
    "visualize": ("mgan.visualize", "look inside VGG-19: feature inversion, activation maximisation, saliency"),
    "precision": ("mgan.precision", "print this CPU's kind and what --precision auto picks on it"),
}


def usage() -> str:
    """The text of ``mgan --help``: the commands, one line each, and an example."""
    width = max(map(len, COMMANDS))
    lines = [
        "usage: mgan <command> [options]      (mgan <command> --help: that command's options)",
        "",
        "Markovian GANs (Li & Wand, ECCV 2016): MDAN, MGAN and the neural-style baselines.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()),
        "",
        "options:",
        "  -h, --help     show this message",
        "  --version      print mgan's version",
        "",
        "example: mgan decode --input photo.jpg --out out.png  (the bundled model, seconds on a CPU)",
    ]
    return "\n".join(lines)


def _unknown(name: str) -> int:
    """One ``error:`` line naming the valid commands (and the closest one); status 2, as argparse."""
    close = difflib.get_close_matches(name, COMMANDS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    print(f"error: unknown command {name!r}; {hint}commands: {', '.join(COMMANDS)} (mgan --help)", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run ``mgan <command> [options]``; returns the command's exit status (2 for a bad command).

    Args:
        argv: the arguments after ``mgan`` (default ``sys.argv[1:]``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # a usage error, but the list of commands is what the user needs to see
        print(usage(), file=sys.stderr)
        return 2
    first, rest = argv[0], argv[1:]
    if first == "help" and rest:  # `mgan help decode` is `mgan decode --help`
        first, rest = rest[0], ["--help"]
    elif first in ("-h", "--help", "help"):
        print(usage())
        return 0
    if first == "--version":
        print(f"mgan {mgan.__version__}")
        return 0
    name = first.replace("-", "_")  # texture-nets is texture_nets
    if name not in COMMANDS:
        return _unknown(first)
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
