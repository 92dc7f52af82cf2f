"""Ctrl-C, SIGTERM and SIGHUP for every command that runs videos (``batch``, ``resume``,
``retry-failed``, ``main``): one implementation, so they all stop the same way."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from rich.console import Console

from gs_video_report.batch.api import RunControl
from gs_video_report.models import StopReason

# SIGTERM (a service manager, ``timeout``, ``kill``) and SIGHUP (a closed terminal or SSH
# session) mean what Ctrl-C means: a clean, resumable stop, not a kill mid-call.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupts:
    """Once: stop claiming work and let the calls in flight finish (their answers are
    saved, so nothing paid for is lost). Twice: stop at once (what was in flight is redone
    by the next resume, nothing else). Install inside the running event loop, around the
    engine call; ``control`` goes to the engine."""

    def __init__(self, console: Console | None = None) -> None:
        # None: a display says it (on the engine's BatchStopping); else this console
        self.console = console
        self.control = RunControl()
        self.presses = 0
        self._main: asyncio.Task[Any] | None = None
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        self._main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
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
        self.presses += 1
        name = "Ctrl-C" if sig is signal.SIGINT else sig.name
        if self.presses == 1:
            self.control.request_stop(StopReason.INTERRUPTED, f"interrupted ({name})")
            if self.console is not None:
                self.console.print(
                    f"\n{name}: finishing the calls in flight, then stopping "
                    "(press Ctrl-C again to stop at once)",
                    highlight=False,
                )
        elif self._main is not None:
            self._main.cancel()
