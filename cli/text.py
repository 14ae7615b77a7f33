"""Text the CLI prints, made safe for a terminal: data never drives it.

What the CLI prints comes from tools, models and the database: untrusted. A terminal acts on control
characters inside it (ESC/CSI sequences that erase lines or move the cursor to forge output, OSC 52 writing the
clipboard, OSC 8 links, C1 controls that some terminals take as ESC, BEL, backspace and carriage return that
overwrite what was printed) and bidirectional-override characters reorder what a person reads. `printable`
shows each of them as an escape (``\\x1b``, ``\\u202e``), visibly and harmlessly, and keeps newlines only where
the caller says they are meant (an answer, a table).
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 controls but tab and newline, DEL, C1 controls
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional marks, embeddings, overrides, isolates
    "\u2028\u2029]"  # line and paragraph separators
)
_UNSAFE_OR_NEWLINE = re.compile(_UNSAFE.pattern[:-1] + "\n]")


def printable(text: object, *, newlines: bool = False) -> str:
    """``text`` (``str()`` of it) with every character that could drive a terminal shown as an escape.

    With ``newlines`` a newline (or CRLF) stays a line break; otherwise it is shown as ``\\n``, so one item
    prints as one line.
    """
    value = text if isinstance(text, str) else str(text)
    if newlines:
        value = value.replace("\r\n", "\n")
    return (_UNSAFE if newlines else _UNSAFE_OR_NEWLINE).sub(_escape, value)


_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
