"""``earwitness detect``: placeholder until the detector lands."""
from earwitness.cli import UserError


def add_arguments(parser):
    parser.add_argument("file", metavar="FILE.wav")


def run(args):
    raise UserError("the detector is not built yet")
