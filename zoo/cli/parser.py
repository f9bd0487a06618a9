"""The `zoo` command's argparse pieces: the parser class whose errors are the zoo's one line
(exit status 2), --version, the argparse types that check numbers, the devices options, and
the handles on subcommands. Each command's own parser is built beside the command
(zoo/cli/*_commands.py), and zoo.cli.main.build_parser assembles them. None of it imports
anything heavy, so `zoo --help` stays fast."""

from __future__ import annotations

import argparse
import math
import re
from typing import Optional, Sequence

from zoo.config import MAX_SEED

# What `add_subparsers` returns: each command's parser-building function adds its parser to it.
Subcommands = argparse._SubParsersAction


class VersionAction(argparse.Action):
    """--version, asking git for the commit only when it is given."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from zoo.version import describe

        print(describe())  # on stdout, where a user's `zoo --version > file` or `$(zoo --version)` looks
        parser.exit(0)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as the zoo's one line (and exit status 2) naming the help of the
    command that refused them."""

    def error(self, message: str):
        command = self.prog.removeprefix("zoo").strip()  # '' for the top level: no doubled 'zoo: error: zoo:'
        self.exit(2, f"zoo: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """argparse's, but words no parser took are refused by the subcommand's parser, whose help
        lists what it takes (argparse itself refuses them at the top level, pointing to `zoo --help`)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            refusing = subcommands(self).choices.get(command, self) if command else self
            refusing.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def integer(low: int, high: Optional[int] = None):
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        value = int(text) if re.fullmatch(r"\s*[+-]?[0-9]+\s*", text) else None  # int() also takes '²' and '1_0'
        if value is None or value < low or (high is not None and value > high):
            span = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}")
        return value

    return parse


def number(low: float, high: float = math.inf):
    """An argparse type: a finite number in [low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            span = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"expected a finite number {span}, got {text!r}")
        return value

    return parse


SEED = integer(0, MAX_SEED)  # the page's limit too (zoo.web.generation)


def add_parallel_arguments(command: argparse.ArgumentParser) -> None:
    """--devices (the data-parallel mesh) and the multi-host options of jax.distributed."""
    group = command.add_argument_group("devices")
    group.add_argument(
        "--devices",
        type=integer(0),
        metavar="N",
        help="split each batch over N devices (0 = all; sets train.devices for training)",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-host job first (jax.distributed.initialize; Slurm and Open MPI are detected)",
    )
    group.add_argument("--coordinator", metavar="HOST:PORT", help="with --distributed: process 0's address")
    group.add_argument("--num-processes", type=integer(1), metavar="N", help="with --distributed: how many processes")
    group.add_argument("--process-id", type=integer(0), metavar="I", help="with --distributed: this process's index")
    group.add_argument(
        "--rendezvous-timeout",
        type=number(1.0, 86400.0),
        metavar="SECONDS",
        help="with --distributed: how long a process waits for the others to join and at each barrier (default 300)",
    )


def subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The parser's subcommands action (argparse keeps no public handle on it)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise ValueError(f"{parser.prog} has no subcommands")


def command_word(argv: Sequence[str]) -> Optional[str]:
    """The subcommand named on a command line: the first word that is neither a top-level
    option nor the value of `--recipes`; None for `zoo`, `zoo --help` or `zoo --version`."""
    words = iter(argv)
    for word in words:
        if word == "--recipes":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None
