"""Stopping a run cleanly on a signal: finish the step, save a checkpoint, then stop.

`chargen train` and `chargen.train()` train inside the same StopOnSignal, so Ctrl-C
(SIGINT), `kill PID` (SIGTERM) and a closed terminal (SIGHUP) end either one with a saved,
resumable checkpoint instead of losing the steps since the last one:

    with StopOnSignal() as stop:
        execute(run, callback, should_stop=stop.is_set)
    if stop.signum is not None:
        ...  # stopped by a signal, after saving: exit as that signal asks

The first signal asks the loop to stop after the current step; a second one stops at
once (KeyboardInterrupt). A signal the process ignores (SIGHUP under nohup) stays ignored.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable, Optional

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class StopOnSignal:
    """While active, catches SIGINT, SIGTERM and SIGHUP: the first asks training to stop and
    save (`on_first(signum)` is told, e.g. to print a line), a second raises KeyboardInterrupt.

    Handlers are installed only in the main thread, where Python delivers signals; in any
    other thread this does nothing and is_set() stays False.
    """

    def __init__(self, on_first: Optional[Callable[[int], None]] = None):
        self.on_first = on_first
        self.signum: Optional[int] = None  # the first signal received
        self.hits = 0
        self._previous: dict[int, object] = {}

    def is_set(self) -> bool:
        """Whether a signal has asked training to stop."""
        return self.hits > 0

    def exit_code(self) -> int:
        """The shell's status for a process ended by the first signal: 130 for Ctrl-C, 143 for SIGTERM."""
        assert self.signum is not None, "no signal was received"
        return 128 + self.signum

    def _handler(self, signum, frame) -> None:
        self.hits += 1
        if self.hits > 1:
            raise KeyboardInterrupt
        self.signum = signum
        if self.on_first is not None:
            self.on_first(signum)

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def pass_on(self) -> None:
        """After __exit__: deliver the first signal again, to the handlers it would have reached
        without us (the caller's own, or the default: a SIGTERM then ends the process)."""
        if self.signum is not None:
            signal.raise_signal(self.signum)
