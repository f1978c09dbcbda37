"""The ``earwitness`` console script: one subcommand per program entry point.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when chosen, so ``earwitness detect`` does
not pay for the fusion server's imports.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from earwitness import __version__
from earwitness.redact import mask_secrets

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "detect": ("edge.cli_detect", "detect impulses in a WAV file and print pulses JSONL"),
    "node": ("edge.cli_node", "run a sensor node (capture, detect, timestamp, publish over MQTT)"),
    "locate": ("fusion.cli_locate", "associate and locate shots among pulses; print incidents JSONL"),
    "gps": ("edge.cli_gps", "GPS diagnostic: one line per fix from a serial port or an NMEA log; PPS and clock"),
    "sim": ("simulator.cli_sim", "run a scenario: render per-sensor audio or the pulses of a fleet"),
    "fusion": ("fusion.cli_fusion", "run the fusion server: pulses in over MQTT, incidents and alerts out"),
    "report": ("fusion.cli_report", "write the forensic report of one incident as HTML or PDF"),
    "calls": ("fusion.cli_calls", "911/CAD calls: import a CSV and match the calls to located gunfire"),
    "plan": ("simulator.cli_plan", "coverage planning: P(located) and expected error per cell; where K more sensors help most"),
    "audit": ("fusion.cli_audit", "audit log: check its hash chain and signatures (earwitness audit verify)"),
    "evidence": ("fusion.cli_evidence", "export an incident's evidence bundle (signed pulses, registry, clips, audit) as a zip"),
    "verify": ("fusion.cli_verify", "check an evidence bundle: every signature and hash; recompute location and rounds"),
    "console": ("fusion.cli_console", "the operator console's users: add, set a role, disable, enable, list"),
    "stats": ("fusion.cli_stats", "transparency figures: alerts, reviews, dispositions by area, month, class, confidence"),
    "unreported": ("fusion.cli_unreported", "per area, gunfire with and without a matching 911 call (CSV, GeoJSON, map)"),
}


class UserError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


def _build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earwitness", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"earwitness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(cmd)
            cmd.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _build_parser(argv).parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except UserError as exc:
        print(f"earwitness {args.command}: error: {mask_secrets(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Point stdout at nothing so that the
        # interpreter's last flush does not fail on the closed pipe too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # Missing or unreadable files, refused connections: the user's to fix, one line.
        where = f": {exc.filename}" if exc.filename else ""
        print(mask_secrets(f"earwitness {args.command}: error: {exc.strerror or exc}{where}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - a bug: its traceback, as Python prints it, without the secrets in it
        print(mask_secrets(traceback.format_exc()), file=sys.stderr, end="")
        return 1
