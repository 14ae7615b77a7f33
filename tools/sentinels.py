"""Values that stand for "not given", where ``None`` already means something.

`NO_FALLBACK` is ``ToolPolicy.fallback``'s default, so ``fallback=None`` can mean the value ``None``. `DEFAULT`
is the default of the arguments whose default is computed (``build_agent(credentials=...)``: loaded from the
environment), so ``None`` can mean "none" there, as it does everywhere else.
"""

from __future__ import annotations

import enum
from typing import Final, Literal


class Sentinel(enum.Enum):
    NO_FALLBACK = "NO_FALLBACK"
    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


NO_FALLBACK: Final = Sentinel.NO_FALLBACK
"""The call has no fallback: when it finally fails, the model gets an error observation."""

DEFAULT: Final = Sentinel.DEFAULT
"""The argument was not given: use its documented default."""

Default = Literal[Sentinel.DEFAULT]
"""The type of `DEFAULT`, for signatures: ``credentials: Credentials | Default | None = DEFAULT``."""
