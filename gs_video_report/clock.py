"""The one clock of the engine: wall-clock seconds and a way to wait.

Every time the engine stores (retry times, leases, ``updated_at``) must survive a reboot
and be readable by other processes, so ``time`` is wall-clock seconds, not a monotonic
counter. Tests replace the whole object (``tests/virtual_time.py``): waits then pass in
virtual time, and nothing in the engine calls ``time.time`` or ``asyncio.sleep`` itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Clock:
    time: Callable[[], float] = field(default=time.time)
    sleep: Sleep = field(default=asyncio.sleep)


REAL = Clock()
