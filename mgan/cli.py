"""The error tail shared by every CLI: one ``error: ...`` line and an exit status, never a traceback.

Every ``main(argv) -> int`` parses its arguments and hands the rest of its work to
:func:`run`, which maps what a user can cause to an exit status:

=============================================  ======  ==========================================
exception                                      status  line on stderr
=============================================  ======  ==========================================
``InputError``, ``ConfigError`` (mgan.errors)     2     ``error: <message>``
``WeightsError`` (mgan.errors)                   2     ``error: <message>``
``OSError`` ENOSPC / EDQUOT (disk full)          1     ``error: disk full while writing <file>: ...``
``OSError`` EACCES / EPERM / EROFS / ENOTDIR /   2     ``error: cannot write <file>: ...``
EISDIR (unwritable output)
``FloatingPointError`` (NaN / inf loss)          1     ``error: <message>``
``MemoryError``, torch out-of-memory             1     ``error: out of memory: <message>``
``KeyboardInterrupt``                          130     the CLI's own ``interrupted`` line
=============================================  ======  ==========================================

Anything else is a bug and keeps its traceback. Before :func:`run` starts (while
``python -m mgan.<cli>`` imports torch) Ctrl-C prints ``interrupted`` and exits 130 too
(``mgan/__init__.py``), and every float option is checked to be finite
(:func:`check_finite_options`): a NaN learning rate or an infinite weight would
otherwise pass every ``<= 0`` check and give a black image.
"""

from __future__ import annotations

import argparse
import errno
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from mgan.errors import ConfigError, InputError, WeightsError, one_line

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR})



def os_error_line(exc: OSError) -> tuple[str, int] | None:
    """``("error: ...", status)`` for a full disk or an unwritable path, else ``None``."""
    what = exc.filename if exc.filename is not None else "the output"
    reason = exc.strerror or one_line(exc)
    if exc.errno in DISK_FULL:
        return f"error: disk full while writing {what}: {reason}", 1
    if exc.errno in NOT_WRITABLE:
        return f"error: cannot write {what}: {reason}", 2
    return None


def check_finite_options(args: argparse.Namespace) -> None:
    """InputError naming the option if a float option (or an item of a list option) is NaN or inf.

    argparse's ``type=float`` accepts ``nan`` and ``inf``, and ``nan <= 0`` is False, so
    range checks alone let them through.
    """
    for name, value in vars(args).items():
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise InputError(f"--{name.replace('_', '-')}: must be a finite number, got {v}")


def named_path(what: str) -> Callable[[str], tuple[str, Path]]:
    """An argparse ``type`` for ``NAME=PATH`` options (``--method mdan=out/``): returns
    ``(name, Path)``, both stripped; ``what`` names the path in the error (``FOLDER``)."""

    def parse(text: str) -> tuple[str, Path]:
        name, sep, path = text.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise argparse.ArgumentTypeError(f"expected NAME={what}, got {text!r}")
        return name.strip(), Path(path.strip())

    return parse


def resolve_device(name: str = "auto"):  # -> torch.device; torch is imported on use (nothing heavy at import)
    """``auto`` -> CUDA when present, else CPU; otherwise ``torch.device(name)``; InputError if unusable.

    The one device rule of every CLI and engine: import it from here.
    """
    import torch  # noqa: PLC0415

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available")
    return device


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (Python's, CUDA's or torch's CPU allocator's)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return "DefaultCPUAllocator" in text or "out of memory" in text.lower()


def _startup_handler() -> Callable[[int, FrameType | None], None] | None:
    """The SIGINT handler ``mgan/__init__.py`` installs while torch imports, if it did."""
    import mgan  # noqa: PLC0415

    return getattr(mgan, "_interrupted_while_starting", None)


def run(fn: Callable[[], int], interrupted: str = "interrupted", args: argparse.Namespace | None = None) -> int:
    """Run a CLI body and turn the errors a user can cause into one stderr line and an exit status.

    Args:
        fn: the CLI's work after argument parsing; returns the exit status (0 on success).
        interrupted: the line printed on Ctrl-C (say what is kept, e.g. finished outputs).
        args: the parsed options, checked by :func:`check_finite_options` before ``fn``.

    Returns:
        ``fn()``'s status, or 2 (bad input, config or unwritable output), 1 (disk full,
        NaN/inf loss) or 130 (interrupted); see the module docstring for the table.
    """
    startup = _startup_handler()
    quiet_start = startup is not None and signal.getsignal(signal.SIGINT) is startup
    try:
        if quiet_start:  # from here on Ctrl-C raises KeyboardInterrupt, handled below
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if args is not None:
            check_finite_options(args)
        return fn()
    except (InputError, ConfigError, WeightsError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not _out_of_memory(exc):
            raise
        print(f"error: out of memory: {one_line(exc)[:200]}; try a smaller --size", file=sys.stderr)
        return 1
    except OSError as exc:
        known = os_error_line(exc)
        if known is None:
            raise
        print(known[0], file=sys.stderr)
        return known[1]
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    finally:
        if quiet_start:  # and while the interpreter shuts down
            signal.signal(signal.SIGINT, startup)
