"""Reading third-party checkpoints as tensors only: no object in a file we are handed may run code.

``torch.load(weights_only=True)`` already refuses to build arbitrary objects; what it raises then
(``UnpicklingError`` with advice to pass ``weights_only=False``) is the wrong thing to show a user holding a
hostile file. Every checkpoint the exporter reads goes through :func:`load_tensors`, which turns any refusal
into an :class:`~aligngemini_sdk.errors.ExportError` that says what was refused and why.
"""

from __future__ import annotations

import os
from typing import Any

from aligngemini_sdk.errors import ExportError


def load_tensors(path: str | os.PathLike[str]) -> Any:
    """The tensors-only contents of a torch checkpoint (mapped to CPU). Raises :class:`ExportError` for a file
    that holds anything else (pickled objects, code) or is not a checkpoint at all."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as exc:
        kind = "holds objects other than tensors (possibly code)" if isinstance(exc, pickle.UnpicklingError) \
            else f"is not a readable torch checkpoint ({type(exc).__name__})"
        raise ExportError(f"{os.fspath(path)}: {kind}; refused: checkpoints are read as tensors only and never "
                          "unpickled. Convert it to safetensors from a trusted environment.") from None
    except OSError as exc:
        raise ExportError(f"{os.fspath(path)}: cannot read ({exc.strerror or exc})") from None
