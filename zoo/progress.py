"""Feedback for whatever takes more than a moment: a bar on a terminal, a line every few
seconds in a log.

On a terminal (stderr a TTY, CI unset) `Progress` is a tqdm bar. Elsewhere (a
log file, CI=true) carriage-return redraws would be noise, so it writes a
plain line at most every `LOG_EVERY_SECONDS` (the first after that long, so
work that ends sooner writes nothing), with the fraction done
and the time left, and one line at its end. `stage` says on a terminal what
starts now ("loading", "compiling"); a log gets no stage lines, so a command
that fails early still says only its one `zoo: error:` line.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Optional

LOG_EVERY_SECONDS = 5.0


def on_terminal() -> bool:
    """Whether progress may redraw a bar: stderr is a terminal and this is not a CI job."""
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


def stage(message: str) -> None:
    """On a terminal, one line on stderr saying what the command does now."""
    if on_terminal():
        print(f"zoo: {message}", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Progress through `total` units of work (steps, examples, runs), as a context manager.

    `enabled=False` is silent. `update(n)` after each piece of work; `note(**values)`
    shows values beside it (a loss). The clock starts at construction; `clock` is for tests.

    The time left is measured from the first update on: the first piece of work usually
    includes compiling (seconds for a training step that then takes milliseconds), so a rate
    that counted it would promise minutes for what ends in seconds.
    """

    def __init__(
        self,
        total: int,
        description: str,
        *,
        unit: str = "it",
        initial: int = 0,
        enabled: bool = True,
        every: float = LOG_EVERY_SECONDS,
        terminal: Optional[bool] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.description, self.unit, self.done = int(total), description, unit, int(initial)
        self.enabled, self.every, self._clock = enabled, every, clock
        self._began = self._last_line = clock()
        self._rate_from: Optional[tuple[float, int]] = None  # (time, done) at the first update
        self._notes: dict[str, Any] = {}
        self._bar = None
        if enabled and (on_terminal() if terminal is None else terminal):
            from tqdm.auto import tqdm

            # tqdm's own time left counts from construction, compilation included; the bar shows
            # the zoo's instead (remaining_seconds), in its postfix.
            self._bar = tqdm(
                total=self.total,
                initial=self.done,
                desc=description,
                unit=unit,
                dynamic_ncols=True,
                leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}{postfix}]",
            )

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close(finished=exc_info[0] is None)

    def update(self, count: int = 1) -> None:
        self.done += count
        if self._rate_from is None:
            self._rate_from = (self._clock(), self.done)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(count)
        elif self.enabled and self._clock() - self._last_line >= self.every and self.done < self.total:
            self._last_line = self._clock()
            self._write(self.line())

    def note(self, **values: Any) -> None:
        """Values to show beside the count (on the bar, or in the next line)."""
        self._notes.update(values)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)

    def remaining_seconds(self) -> Optional[float]:
        """The time left at the rate since the first update (which included any compilation), or
        None until work after it is done."""
        if self._rate_from is None:
            return None
        since, done_then = self._rate_from
        done_since = self.done - done_then
        if done_since <= 0:
            return None
        return (self._clock() - since) / done_since * (self.total - self.done)

    def _postfix(self) -> str:
        """'2 min 10 s left, loss=1.2': the time left (once known) and the notes."""
        left = self.remaining_seconds()
        parts = [f"{duration(left)} left"] if left is not None else []
        return ", ".join(parts + [f"{k}={v}" for k, v in self._notes.items()])

    def line(self) -> str:
        """'eval: 300/10000 examples (3%), 2 min 10 s left, loss=1.2'."""
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        postfix = self._postfix()
        text = f"{self.description}: {self.done}/{self.total} {self.unit}{percent}"
        return f"{text}, {postfix}" if postfix else text

    def close(self, finished: bool = True) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and finished and self.total and self._clock() - self._began >= self.every:
            self._write(
                f"{self.description}: {self.done}/{self.total} {self.unit} in {duration(self._clock() - self._began)}"
            )
        self.enabled = False

    @staticmethod
    def _write(line: str) -> None:
        print(f"zoo: {line}", file=sys.stderr, flush=True)
