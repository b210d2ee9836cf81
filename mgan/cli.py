"""The error tail shared by every CLI: one ``error: ...`` line and an exit status, never a traceback.

Every ``main(argv) -> int`` parses its arguments and hands the rest of its work to
:func:`run`, which maps what a user can cause to an exit status:

=============================================  ======  ==========================================
exception                                      status  line on stderr
=============================================  ======  ==========================================
:class:`mgan.io.InputError`, ``ConfigError``     2     ``error: <message>``
:class:`mgan.vgg.WeightsError`                   2     ``error: <message>``
``OSError`` ENOSPC / EDQUOT (disk full)          1     ``error: disk full while writing <file>: ...``
``OSError`` EACCES / EPERM / EROFS / ENOTDIR /   2     ``error: cannot write <file>: ...``
EISDIR (unwritable output)
``FloatingPointError`` (NaN / inf loss)          1     ``error: <message>``
``KeyboardInterrupt``                          130     the CLI's own ``interrupted`` line
=============================================  ======  ==========================================

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

from mgan.config import ConfigError
from mgan.io import InputError
from mgan.vgg import WeightsError

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR})


def one_line(exc: BaseException) -> str:
    """The first non-empty line of ``str(exc)`` (the exception's type name if there is none).

    Some messages wrap multi-line library text (``torch.load``'s ``weights_only``
    refusal is a paragraph); the contract is one line per error.
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def os_error_line(exc: OSError) -> tuple[str, int] | None:
    """``("error: ...", status)`` for a full disk or an unwritable path, else ``None``."""
    what = exc.filename if exc.filename is not None else "the output"
    reason = exc.strerror or one_line(exc)
    if exc.errno in DISK_FULL:
        return f"error: disk full while writing {what}: {reason}", 1
    if exc.errno in NOT_WRITABLE:
        return f"error: cannot write {what}: {reason}", 2
    return None


def run(fn: Callable[[], int], interrupted: str = "interrupted") -> int:
    """Run a CLI body and turn the errors a user can cause into one stderr line and an exit status.

    Args:
        fn: the CLI's work after argument parsing; returns the exit status (0 on success).
        interrupted: the line printed on Ctrl-C (say what is kept, e.g. finished outputs).

    Returns:
        ``fn()``'s status, or 2 (bad input, config or unwritable output), 1 (disk full,
        NaN/inf loss) or 130 (interrupted); see the module docstring for the table.
    """
    try:
        return fn()
    except (InputError, ConfigError, WeightsError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
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
