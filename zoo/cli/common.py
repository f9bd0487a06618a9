"""What several commands share: the checks of the paths they write, the recipe book with the
user's --recipes, and joining a multi-host job."""

from __future__ import annotations

from pathlib import Path

from zoo.errors import ZooError


def start_devices(args) -> None:
    """Join the multi-host job when asked; refuse a bad --devices before anything is built."""
    if args.distributed:
        from zoo.training.parallel import RENDEZVOUS_TIMEOUT_SECONDS, initialize_distributed

        timeout = args.rendezvous_timeout or RENDEZVOUS_TIMEOUT_SECONDS
        initialize_distributed(args.coordinator, args.num_processes, args.process_id, timeout)
    elif any(
        given is not None for given in (args.coordinator, args.num_processes, args.process_id, args.rendezvous_timeout)
    ):
        raise ZooError("--coordinator, --num-processes, --process-id and --rendezvous-timeout need --distributed")


def output_dir(path: Path, option: str) -> Path:
    """A directory the command may create or write into: refused when a file is in the way."""
    for place in [path, *path.parents]:
        if place.exists() and not place.is_dir():
            raise ZooError(f"{option} {path}: {place} exists and is not a directory")
    return path


def image_file(path: Path, option: str) -> Path:
    """A path an image can be saved to, by its extension (matplotlib's formats)."""
    from matplotlib.figure import Figure

    if path.is_dir():
        raise ZooError(f"{option} {path}: is a directory; give a file name, e.g. {path / 'samples.png'}")
    formats = sorted(Figure().canvas.get_supported_filetypes())
    if path.suffix.lower().lstrip(".") not in formats:
        raise ZooError(
            f"{option} {path}: cannot write an image of type {path.suffix or '(no extension)'!r}; "
            f"use one of {', '.join('.' + f for f in formats)}"
        )
    output_dir(path.parent, option)
    return path


def recipe_book(args):
    """registry.yaml plus the user's recipe files (--recipes)."""
    from zoo.cli.api import recipe_book as book

    return book(args.recipes)
