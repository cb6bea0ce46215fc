"""aligngemini_sdk.plot: one figure written to one file, closed whatever happens."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from aligngemini_sdk.plot import figure


def test_a_figure_is_written_as_a_png_and_closed(tmp_path):
    before = plt.get_fignums()
    with figure(tmp_path / "a.png", figsize=(3, 2)) as ax:
        ax.plot([0, 1], [1, 0])
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == before


def test_several_axes_come_as_an_array(tmp_path):
    with figure(tmp_path / "b.png", nrows=1, ncols=2, figsize=(4, 2)) as axes:
        assert len(axes) == 2 and axes[0].figure is axes[1].figure


def test_when_drawing_fails_nothing_is_written_and_the_figure_is_closed(tmp_path):
    before = plt.get_fignums()
    with pytest.raises(ZeroDivisionError), figure(tmp_path / "c.png") as ax:
        ax.plot([0, 1 / 0])
    assert not (tmp_path / "c.png").exists() and plt.get_fignums() == before
