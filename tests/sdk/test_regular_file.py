"""sdk/regular_file.py: the SDK opens an image, video or bundle path only if it is a regular file, before the open
and again on the descriptor, and never blocks on a FIFO."""

from __future__ import annotations

import os

import pytest

from aligngemini_sdk import regular_file
from aligngemini_sdk.regular_file import DIRECTORY, SPECIAL, NotRegularFile, open_regular, stat_regular


def test_a_regular_file_opens_read_only_with_its_stat(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"12345")
    fd, st = open_regular(path)
    try:
        assert st.st_size == 5 and os.read(fd, 10) == b"12345"
        with pytest.raises(OSError):
            os.write(fd, b"x")
    finally:
        os.close(fd)


@pytest.mark.parametrize("make,kind", [(lambda p: p.mkdir(), DIRECTORY), (lambda p: os.mkfifo(p), SPECIAL)])
def test_a_directory_or_fifo_is_refused_before_it_is_opened(tmp_path, make, kind):
    path = tmp_path / "x"
    make(path)
    for call in (stat_regular, open_regular):
        with pytest.raises(NotRegularFile) as info:
            call(path)
        assert info.value.kind == kind and not info.value.swapped


def test_a_device_is_refused():
    with pytest.raises(NotRegularFile, match="device, pipe or socket"):
        open_regular("/dev/zero")


def test_os_failures_pass_through_for_the_caller_to_name(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing")
    with pytest.raises(ValueError):
        open_regular(str(tmp_path) + "/a\0b")


def test_a_fifo_swapped_in_after_the_check_is_refused_on_the_descriptor_without_blocking(tmp_path, monkeypatch):
    """The path is a regular file when checked; a FIFO is renamed over it before the open (a real race, made to
    happen every time): the non-blocking open returns, and the descriptor's stat refuses it and is closed."""
    path, fifo = tmp_path / "photo.jpg", tmp_path / "fifo"
    path.write_bytes(b"jpeg")
    os.mkfifo(fifo)
    checked = regular_file.stat_regular
    opened: list[int] = []

    def check_then_swap(p):
        st = checked(p)
        os.replace(fifo, path)
        return st

    real_open = os.open
    monkeypatch.setattr(regular_file, "stat_regular", check_then_swap)
    monkeypatch.setattr(regular_file.os, "open", lambda *a: opened.append(real_open(*a)) or opened[-1])
    with pytest.raises(NotRegularFile) as info:
        open_regular(path)
    assert info.value.swapped and info.value.kind == SPECIAL
    with pytest.raises(OSError):  # the descriptor was closed
        os.fstat(opened[0])
