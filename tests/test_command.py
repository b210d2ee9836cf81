"""The ``mgan`` command (mgan/__main__.py): every CLI is a subcommand, --help lists them, a bad one is one line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mgan import __main__ as command

ROOT = Path(__file__).resolve().parent.parent


def _modules_with_main() -> set[str]:
    """``mgan.X`` for every module of the package that defines a top-level ``main`` (read, not imported)."""
    found = set()
    for path in (ROOT / "mgan").rglob("*.py"):
        if path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_every_cli_module_is_a_command():
    """A new module with a main() must get a line in COMMANDS, or `mgan` silently lacks it."""
    assert _modules_with_main() == {module for module, _ in command.COMMANDS.values()}


def test_help_lists_each_command_on_one_line(capsys):
    assert command.main(["--help"]) == 0
    out = capsys.readouterr().out.splitlines()
    for name, (_, summary) in command.COMMANDS.items():
        assert sum(line.split()[:1] == [name] for line in out) == 1, name
        assert any(line.split()[:1] == [name] and line.endswith(summary) for line in out)
    assert command.main(["-h"]) == 0 and command.main(["help"]) == 0


@pytest.mark.parametrize("argv", [["bad"], ["--bad"], ["decod", "--help"]])
def test_unknown_command_is_one_line_and_status_2(argv, capsys):
    assert command.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert captured.out == "" and len(err) == 1 and err[0].startswith("error: unknown command")
    assert "decode" in err[0]  # it lists the valid ones
    if argv[0] == "decod":
        assert "did you mean 'decode'" in err[0]


def test_no_command_shows_the_list_and_fails(capsys):
    assert command.main([]) == 2
    assert "commands:" in capsys.readouterr().err


def test_version(capsys):
    import mgan

    assert command.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mgan {mgan.__version__}"


def test_dispatch_runs_the_module_main_with_the_rest(capsys):
    from mgan import zoo

    assert command.main(["zoo", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == zoo.listing()
    assert command.main(["zoo", "show", "no-such-model"]) == 2  # the module's own error tail and status
    assert capsys.readouterr().err.startswith("error: unknown style")


def test_command_help_is_the_module_help(capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's --help exits 0 from inside the module's main
        command.main(["help", "zoo"])
    assert exc.value.code == 0 and "usage: python -m mgan.zoo" in capsys.readouterr().out


def test_python_m_mgan_help_is_fast_and_imports_no_torch():
    """`mgan --help` must not pay for torch: the modules are imported only once a command is chosen."""
    code = ("import sys; from mgan.__main__ import main; assert main(['--help']) == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "mgan", "bad"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and done.stdout == ""
