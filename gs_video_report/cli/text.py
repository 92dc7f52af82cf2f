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


# Rich lays a table out cell by cell (about 2 ms a row here): the 5,000 rows of a big
# batch's status or plan took 10-20 s. Past this many rows the same columns go out as
# plain aligned text, a line per row.
PLAIN_ROWS = 200


def plain_table(title: str, headers: tuple[str, ...], rows: list[list[str]]) -> str:
    """The title, a blank line, the header and one line per row: every column but the
    last (an error, a path: not padded) as wide as its longest cell; cells printable."""
    shown = [[printable(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in shown)) for i, h in enumerate(headers[:-1])]
    lines = [printable(title), ""]
    for row in (list(headers), *shown):
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)
