"""The one exception type for user errors.

Every user-facing failure (bad file, bad field, bad flag) raises :class:`XdsError`; the CLI renders it
as a single stderr line ``xds: error: FILE: WHERE: MESSAGE`` and exits with code 2.
"""

from __future__ import annotations


class XdsError(Exception):
    """A user error: bad input, not a bug.

    ``file`` is the input file (or flag) at fault, ``where`` the field path or ``line N``, and
    ``message`` says what is wrong and what is allowed.
    """

    def __init__(self, message: str, *, file: str | None = None, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = None if file is None else str(file)
        self.where = where

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.where) if p]
        # one line, always: a field name or path taken from bad input may hold newlines too
        return " ".join(": ".join(parts + [self.message]).split())

    def at(self, *, file: str | None = None, where: str | None = None) -> "XdsError":
        """Return a copy located in ``file`` / ``where`` when not already located."""
        return XdsError(self.message, file=self.file or file, where=self.where or where)
