"""The `zoo` command: list, plugins, show, train, eval, sample, plot, bench, compare, serve, export-web,
and the commands plugins add (`register_commands`, zoo.cli.plugin_commands).

Each built-in command is run by a function beside the one that builds its parser, in
zoo/cli/*_commands.py; this module assembles the parser and runs the command named. Errors
the user can act on print one line on stderr and exit with status 2."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Optional, Sequence

from zoo.cli import page_commands, registry_commands, run_commands, suite_commands
from zoo.cli.parser import Parser, Subcommands, VersionAction, command_word, subcommands
from zoo.errors import ZooError, overrides_named
from zoo.training.signals import TrainingInterrupted


def add_plugins_parser(commands: Subcommands) -> None:
    commands.add_parser("plugins", help="list loaded plugins and what each registers")


def cmd_plugins(args, registry) -> None:
    from zoo.cli.plugin_commands import list_plugin_commands
    from zoo.core.plugin_manager import default_manager, plugin_source

    by_plugin: dict[str, list[str]] = {}
    for component in registry.list():
        by_plugin.setdefault(component.plugin, []).append(f"{component.kind}:{component.name}")
    for command in list_plugin_commands(build_parser(), default_manager()):
        by_plugin.setdefault(command.plugin, []).append(f"command:{command.name}")
    for plugin, names in sorted(by_plugin.items()):
        print(f"{plugin}  ({plugin_source(plugin)})")
        print("    " + ", ".join(names))


# Every built-in command, in the order `zoo --help` lists them: the function that adds its
# parser, and the function that runs it with the parsed arguments and the registry.
BUILT_IN: dict[str, tuple[Callable[[Subcommands], None], Callable[..., Optional[int]]]] = {
    "list": (registry_commands.add_list_parser, registry_commands.cmd_list),
    "plugins": (add_plugins_parser, cmd_plugins),
    "show": (registry_commands.add_show_parser, registry_commands.cmd_show),
    "train": (run_commands.add_train_parser, run_commands.cmd_train),
    "eval": (run_commands.add_eval_parser, run_commands.cmd_eval),
    "sample": (run_commands.add_sample_parser, run_commands.cmd_sample),
    "plot": (run_commands.add_plot_parser, run_commands.cmd_plot),
    "bench": (suite_commands.add_bench_parser, suite_commands.cmd_bench),
    "serve": (page_commands.add_serve_parser, page_commands.cmd_serve),
    "export-web": (page_commands.add_export_web_parser, page_commands.cmd_export_web),
    "compare": (suite_commands.add_compare_parser, suite_commands.cmd_compare),
}
COMMANDS = {name: run for name, (_, run) in BUILT_IN.items()}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every built-in subcommand (plugins' commands are added when one runs)."""
    parser = Parser(
        prog="zoo",
        description="A zoo of variational autoencoders in JAX.",
        epilog="Installed plugins may add commands of their own: `zoo plugins` lists them.",
    )
    parser.add_argument("--version", action=VersionAction, help="print the version (and the git commit of a checkout)")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the traceback of an error above its one line (anywhere on the line; or ZOO_DEBUG=1)",
    )
    parser.add_argument(
        "--recipes",
        action="append",
        default=[],
        metavar="FILE",
        help="a recipe file of your own, read after registry.yaml (repeatable)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for add_parser, _ in BUILT_IN.values():
        add_parser(commands)
    return parser


def one_line(message: str) -> str:
    """A message as one printable line: a name from a file may hold newlines, control
    characters or lone surrogates, which are shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def quiet_dependencies() -> None:
    """Leave out warnings of dependencies that are known to be harmless here (orbax's absl
    notes about metadata it does not need); the zoo says itself what a user must know."""
    import logging
    import warnings

    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="orbax")


def resume_command(argv: Sequence[str], command: str) -> str:
    """The command line that continues an interrupted `zoo train` or `zoo bench`."""
    import shlex

    words = ["zoo", *argv]
    if command == "train" and "--resume" not in words:
        words.append("--resume")  # a bench resumes its unfinished runs by itself
    return shlex.join(words)


def wants_traceback(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether an error's traceback is wanted (--debug anywhere on the line, where a user adds it
    to the command that failed, or ZOO_DEBUG=1), and the command line without --debug."""
    debug = os.environ.get("ZOO_DEBUG", "").lower() in ("1", "true", "yes") or "--debug" in argv
    return debug, [word for word in argv if word != "--debug"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `zoo` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, command_line = wants_traceback(argv)
    try:
        with overrides_named("--set"):  # a plugin's command handing --set to zoo.build names --set too
            return run_command(command_line)
    except TrainingInterrupted as exc:
        print(f"zoo: {exc}\nzoo: continue with: {resume_command(argv, command_word(argv) or '')}", file=sys.stderr)
        return exc.exit_status
    except ZooError as exc:
        if debug:  # above the one line, which stays last: what a user reads first
            traceback.print_exception(exc)
        print(f"zoo: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo: interrupted; a run can continue with --resume", file=sys.stderr)
        return 130


def run_command(argv: list[str]) -> int:
    """Parse the command line and run its command, a built-in or a plugin's; returns the exit status."""
    parser = build_parser()
    plugin_commands: Optional[dict] = None
    if command_word(argv) not in (None, *subcommands(parser).choices):
        plugin_commands = load_plugin_commands(parser)  # the parser must know a plugin's command to parse it
    args = parser.parse_args(argv)  # exits here on --help and on argparse's errors
    quiet_dependencies()
    if (
        plugin_commands is None
    ):  # after parsing, so `zoo list --help` imports no plugin; a clash is refused on every run
        plugin_commands = load_plugin_commands(parser)
    from zoo.core.plugin_manager import default_registry

    run = COMMANDS[args.command] if args.command in COMMANDS else plugin_commands[args.command].run
    status = run(args, default_registry())
    return 0 if status is None else int(status)


def load_plugin_commands(parser) -> dict:
    """Every installed plugin's commands, added to `parser`, by name."""
    from zoo.cli.plugin_commands import add_plugin_commands
    from zoo.core.plugin_manager import default_manager

    return add_plugin_commands(parser, default_manager())


if __name__ == "__main__":
    sys.exit(main())
