"""The console script itself: help, version, unknown commands."""
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "earwitness", *args], capture_output=True, text=True)


def test_help_lists_every_command():
    from earwitness.cli import COMMANDS

    out = run("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


def test_every_command_has_help():
    from earwitness.cli import COMMANDS

    for name in COMMANDS:
        out = run(name, "--help")
        assert out.returncode == 0, out.stderr
        assert "usage: earwitness " + name in out.stdout


def test_unknown_command_fails_with_usage():
    out = run("no-such-command")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr
