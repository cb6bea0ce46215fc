"""Sub-commands that live beside their implementation modules (eval, bench, export vlm)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    return None
