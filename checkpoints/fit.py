"""Values made to fit their column before they are written, the same way on SQLite, PostgreSQL and MySQL/MariaDB.

Text from tools and models can hold what a database refuses: PostgreSQL refuses NUL in text; every driver refuses
a lone surrogate (it has no UTF-8 form); ``VARCHAR(255)`` refuses a 256-character value on PostgreSQL and strict
MariaDB (SQLite takes anything); MySQL's ``TEXT`` holds 65,535 bytes; JSON columns refuse NaN and infinities.
One such value used to fail a whole batch of ledger rows, or a side-effect call's completion on every resume.

So, at the boundary: NUL and lone surrogates become U+FFFD; an over-long key keeps its start and gets a hash of
the whole (distinct values stay distinct, equal ones stay equal); long text is cut with a note saying how much
was cut; non-finite numbers in JSON become strings, and anything JSON cannot hold its ``str``.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from sqlalchemy import JSON, String, Table

REPLACEMENT = "\ufffd"
TEXT_LIMIT_BYTES = 65_535
"""The most a ``TEXT`` column holds on MySQL/MariaDB, in UTF-8 bytes: the cap for long text on every backend."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether every database can store ``text`` as it is (no NUL, no lone surrogate)."""
    return _UNSTORABLE.search(text) is None


def clean(text: str) -> str:
    """``text`` without what no database stores as text: NUL and lone surrogates become U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def fit_key(text: str, length: int) -> str:
    """``text`` cleaned and, if longer than ``length`` characters, its start + ``…`` + a hash of the whole."""
    text = clean(text)
    if len(text) <= length:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[: length - len(digest) - 1]}…{digest}"


def fit_text(text: str, limit_bytes: int = TEXT_LIMIT_BYTES) -> str:
    """``text`` cleaned and, if its UTF-8 form is longer than ``limit_bytes``, cut with a note of what was cut."""
    text = clean(text)
    encoded = text.encode()
    if len(encoded) <= limit_bytes:
        return text
    kept = encoded[: limit_bytes - 80].decode(errors="ignore")
    return f"{kept}… [{len(text) - len(kept)} more characters not recorded]"


def fit_json(value: Any) -> Any:
    """``value`` as a JSON column stores it everywhere: strings cleaned, non-finite floats and values JSON has no
    type for as their ``str``."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {clean(str(k)): fit_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [fit_json(v) for v in value]
    return clean(str(value))


def fit_row(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with each value fitted to its column of ``table``: keys and names (``VARCHAR(n)``) by `fit_key`,
    other text by `fit_text`, JSON by `fit_json`."""
    fitted = dict(row)
    for name, value in row.items():
        column = table.c.get(name)
        if column is None or value is None:
            continue
        if isinstance(column.type, JSON):
            fitted[name] = fit_json(value)
        elif isinstance(value, str) and isinstance(column.type, String):
            length = column.type.length
            fitted[name] = fit_key(value, length) if length else fit_text(value)
    return fitted
