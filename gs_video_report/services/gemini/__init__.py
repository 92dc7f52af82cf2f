"""Everything that talks to Gemini. The only package that imports google.genai.

The names load on first use (PEP 562): google-genai takes about a second to import, and
what only needs the key pool's bookkeeping (the batch's decisions, ``keys``, ``status``)
or nothing of Gemini at all (``--help``) must not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gs_video_report.services.gemini.keypool import KeyPool, KeyState, NoUsableKey
    from gs_video_report.services.gemini.service import GeminiService, VideoRef

__all__ = ["GeminiService", "KeyPool", "KeyState", "NoUsableKey", "VideoRef"]

_HOME = {
    "KeyPool": "keypool",
    "KeyState": "keypool",
    "NoUsableKey": "keypool",
    "GeminiService": "service",
    "VideoRef": "service",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
