"""String-valued enums for the SDK's closed vocabularies (device, power mode): callers may pass the enum or its
value; each is parsed once, where it enters (the options)."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

_C = TypeVar("_C", bound="Choice")


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

    @classmethod
    def parse(cls: type[_C], value: str | _C) -> _C:
        """The member for ``value`` (a member or its string); an unknown value raises :meth:`invalid`'s error."""
        try:
            return cls(value)
        except ValueError:
            raise cls.invalid(value) from None

    @classmethod
    def invalid(cls, value: object) -> Exception:
        return ValueError(f"{cls.__name__} must be one of {cls.names()}, got {value!r}")
