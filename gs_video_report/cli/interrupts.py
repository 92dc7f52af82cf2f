"""Ctrl-C, SIGTERM and SIGHUP during a run: the first asks the engine to stop, the second
stops at once."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from gs_video_report.batch.api import RunControl
from gs_video_report.models import StopReason


class Interrupts:
    """Ctrl-C once: stop claiming work and let the calls in flight finish. Twice: stop at
    once (what was in flight is redone by the next resume, nothing else). SIGTERM and
    SIGHUP mean what Ctrl-C means, so a service manager or a closed terminal gets a clean
    stop."""

    def __init__(self) -> None:
        self.control = RunControl()
        self.presses = 0
        self._main: asyncio.Task[Any] | None = None
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        self._main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(sig, self.press, sig)
                self._installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or Windows: KeyboardInterrupt still works

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def press(self, sig: signal.Signals = signal.SIGINT) -> None:
        # the first: the engine emits BatchStopping, and the display says what now
        self.presses += 1
        name = "Ctrl-C" if sig is signal.SIGINT else sig.name
        if self.presses == 1:
            self.control.request_stop(StopReason.INTERRUPTED, f"interrupted ({name})")
        elif self._main is not None:
            self._main.cancel()
