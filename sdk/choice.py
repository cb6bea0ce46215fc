"""String-valued enums for the SDK's closed vocabularies (device, power mode): callers may pass the enum or its
value; each is parsed once, where it enters (the options)."""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A string-valued choice: compares equal to, prints as and serialises (JSON) to its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __hash__(self) -> int:  # Enum hashes the member's name; a key must find its value's entry and back
        return hash(str(self.value))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(str(m.value) for m in cls)
