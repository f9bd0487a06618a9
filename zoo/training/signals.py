"""Stopping training cleanly on Ctrl-C (SIGINT) and SIGTERM.

The first signal asks the training loop to stop: it stops dispatching steps,
writes a checkpoint at the step it reached and raises `TrainingInterrupted`,
whose message says how to continue. A second signal stops at once (Python's
KeyboardInterrupt); orbax writes checkpoints atomically, so the previous one
survives even that.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

from zoo.errors import ZooError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(ZooError):
    """Training stopped on a signal after writing a checkpoint at `step`."""

    def __init__(self, message: str, signum: int, step: int):
        super().__init__(message)
        self.signum, self.step = signum, step

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended."""
        return 128 + self.signum


class StopRequest:
    """Set by the first stop signal; the loop polls it between steps."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def __call__(self, signum: int, frame) -> None:
        if self.signum is not None:  # a second signal: the user does not want to wait
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextlib.contextmanager
def stop_requested_by_signals() -> Iterator[StopRequest]:
    """A StopRequest that SIGINT and SIGTERM set while the block runs (handlers restored after).

    Off the main thread Python cannot install handlers; there the request is
    never set and signals act as they would have.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {number: signal.signal(number, request) for number in STOP_SIGNALS}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
