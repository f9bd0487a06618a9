"""`zoo list` and `zoo show`: the registry's components and the named variants, each command
beside the function that builds its parser."""

from __future__ import annotations

from zoo.cli.common import recipe_book
from zoo.cli.parser import Subcommands
from zoo.errors import UnknownComponentError

VARIANT_KIND = "variant"


def add_list_parser(commands: Subcommands) -> None:
    listing = commands.add_parser("list", help="list components and variants")
    listing.add_argument("kind", nargs="?", help="a component kind, or 'variant'")
    listing.add_argument("pattern", nargs="?", default="*", help="glob on names, e.g. 'cvae*'")


def cmd_list(args, registry) -> None:
    from zoo.core.registry import KINDS, unknown_name_message

    kinds = list(KINDS) + [VARIANT_KIND]
    if args.kind is not None and args.kind not in kinds and args.kind.rstrip("s") not in kinds:
        raise UnknownComponentError(unknown_name_message("kind", args.kind, kinds))
    wanted = None if args.kind is None else args.kind.rstrip("s") if args.kind not in kinds else args.kind
    for component in registry.list(None if wanted in (None, VARIANT_KIND) else wanted, args.pattern):
        if wanted != VARIANT_KIND:
            print(f"{component.kind:<11} {component.name:<20} {component.summary}")
    if wanted in (None, VARIANT_KIND):
        import fnmatch

        book = recipe_book(args)
        for name in book.names():
            if fnmatch.fnmatchcase(name, args.pattern):
                description = (book.raw(name).get("description") or "").strip()
                print(f"{VARIANT_KIND:<11} {name:<20} {description}")


def add_show_parser(commands: Subcommands) -> None:
    show = commands.add_parser("show", help="print a variant's resolved recipe")
    show.add_argument("variant")
    show.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override one field")


def cmd_show(args, registry) -> None:
    from zoo.core.recipes import dump

    print(dump(recipe_book(args).resolve(args.variant, registry, args.set)), end="")
