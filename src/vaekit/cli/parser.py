"""The ``vaekit`` argument parser: every command in the order ``vaekit --help`` lists them.

Each command's flags are declared in the module of its group: :mod:`vaekit.cli.train_parser`
(generated from the config fields by :mod:`vaekit.cli.flags`), :mod:`vaekit.cli.run_parsers`
(one trained run), :mod:`vaekit.cli.data_parsers` (data and new data) and
:mod:`vaekit.cli.lesson_parsers` (run against run, and the lecture's lessons).
"""

from __future__ import annotations

import argparse

from vaekit._version import __version__
from vaekit.cli import data_parsers, lesson_parsers, run_parsers
from vaekit.cli.common import DEBUG_HELP
from vaekit.cli.flags import Parser
from vaekit.cli.train_parser import add_train_parser, train_sections

__all__ = ["build_parser", "subcommands", "train_sections"]


def build_parser(light: bool = False) -> argparse.ArgumentParser:
    """Every command and its flags. ``light``: without `vaekit train`'s generated flags,
    enough for `vaekit --help` and `vaekit --version` (no model registry, no torch)."""
    parser = Parser(
        prog="vaekit",
        description="Variational autoencoders: train, evaluate and sample. "
        "All likelihood numbers are in nats per example unless they say bits per dim.",
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_train_parser(commands, light)
    run_parsers.add_evaluate_parser(commands)
    data_parsers.add_datasets_parser(commands)
    run_parsers.add_sample_parser(commands)
    run_parsers.add_picture_parsers(commands)
    data_parsers.add_encode_parser(commands)
    data_parsers.add_impute_parser(commands)
    data_parsers.add_decode_parser(commands)
    data_parsers.add_score_parser(commands)
    run_parsers.add_report_parser(commands)
    run_parsers.add_explore_parser(commands)
    lesson_parsers.add_compare_parser(commands)
    lesson_parsers.add_lesson_parser(commands)
    lesson_parsers.add_old_em_parser(commands)
    run_parsers.add_export_parser(commands)
    data_parsers.add_pack_parser(commands)
    for _, command in subcommands(parser):  # `vaekit sample ... --debug` works too
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
    return parser


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """``("sample", parser), ("lesson em", parser), ...``: every command's own parser, a
    command with commands of its own (``lesson``) before them."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                found.append((name, command))
                found += [(f"{name} {n}", sub) for n, sub in subcommands(command)]
    return found
