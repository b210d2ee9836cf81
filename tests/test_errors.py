"""The user errors (mgan.errors): one class each wherever it is imported from, one line each on stderr."""

import pytest

from mgan import cli, config, errors, io, vgg


def test_one_class_each_and_the_old_names_still_import():
    assert io.InputError is errors.InputError
    assert config.ConfigError is errors.ConfigError
    assert vgg.WeightsError is errors.WeightsError
    # ValueError / RuntimeError: callers that catch the builtin keep working
    assert issubclass(errors.InputError, ValueError) and issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.WeightsError, RuntimeError)
    assert cli.one_line is errors.one_line


@pytest.mark.parametrize("message,line", [
    ("plain", "plain"),
    ("\n\n  first real line  \nsecond", "first real line"),
    ("", "RuntimeError"),
    ("   \n\t", "RuntimeError"),
])
def test_one_line_is_the_first_non_empty_line(message, line):
    assert errors.one_line(RuntimeError(message)) == line


@pytest.mark.parametrize("exc", [errors.InputError("bad\nmore"), errors.ConfigError("key: bad"),
                                 errors.WeightsError("no weights\ndetail")])
def test_cli_prints_each_as_one_line_with_status_2(exc, capsys):
    def fail() -> int:
        raise exc

    assert cli.run(fail) == 2
    err = capsys.readouterr().err
    assert err == f"error: {errors.one_line(exc)}\n"
