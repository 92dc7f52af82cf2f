"""Names are data, not markup: what the user's files, lists and CSV cells (and the errors
quoting them) contain is printed as it is, never interpreted.

``printable`` makes terminal control characters visible (``\\x1b``, ``\\r``, ``\\x07``): an
ESC sequence in a file name could clear the screen, move the cursor or retitle the
window, and ``\\r`` could overwrite the line that names it. Bidirectional overrides are
shown too, as they reorder what is read. ``literal`` also escapes Rich markup, for
text printed through a Rich console (``[red]`` and ``[link=...]`` stay text).
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROLS_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, lines: bool = False) -> str:
    """``text`` with its control characters shown as escapes; ``lines`` keeps newlines
    and tabs (a traceback, a multi-line log record)."""
    pattern = _CONTROLS_BUT_LINES if lines else _CONTROLS
    return pattern.sub(_visible, str(text))


def literal(text: object) -> str:
    """``text`` for a Rich markup string: printable, and its markup escaped."""
    return escape(printable(text))
