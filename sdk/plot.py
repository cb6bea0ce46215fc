"""One figure written to one file: the prologue and epilogue every report plot shares (``bench``, the benchmarks,
the training reports). Needs the ``bench`` extra (matplotlib); a missing one is a :class:`MissingExtraError`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from aligngemini_sdk.extras import require


@contextlib.contextmanager
def figure(path: str | os.PathLike[str], *, dpi: int = 110, tight: bool = True, **subplots: Any) -> Iterator[Any]:
    """``with figure(path, figsize=(6, 4)) as ax: ...`` draws on the axes of ``plt.subplots(**subplots)`` (an array
    of them for several; ``ax.figure`` is the figure) with the non-interactive backend; on leaving, the figure is laid
    out (``tight``), written to ``path`` and closed (closed also when drawing raised, and then nothing is written)."""
    mpl = require("matplotlib", "Report plots")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield axes
        if tight:
            fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
