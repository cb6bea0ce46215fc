"""Opening a path the SDK reads (an image, a video, a bundle's files) only if it is a regular file: checked on the
path before it is opened (a FIFO would block the open, a device such as ``/dev/zero`` would read forever) and again
on the descriptor (the path may have been swapped in between). The open is non-blocking and close-on-exec.

This is the one place that opens such paths; callers turn :class:`NotRegularFile` and ``OSError`` into their own
typed errors (:class:`~aligngemini_sdk.errors.ImageDecodeError`,
:class:`~aligngemini_sdk.errors.BundleIntegrityError`)."""

from __future__ import annotations

import os
import stat

#: read-only; O_NONBLOCK so that a FIFO swapped in after the check cannot hang the open
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
DIRECTORY = "a directory"
SPECIAL = "a device, pipe or socket"


class NotRegularFile(Exception):
    """The path is ``kind`` (:data:`DIRECTORY` or :data:`SPECIAL`); ``swapped``: it became so after its path was
    checked (found on the open descriptor)."""

    def __init__(self, kind: str, swapped: bool = False) -> None:
        super().__init__(kind)
        self.kind, self.swapped = kind, swapped


def stat_regular(path: str | os.PathLike[str]) -> os.stat_result:
    """``path``'s stat; :class:`NotRegularFile` unless it is a regular file (``OSError`` and, for a NUL byte in the
    path, ``ValueError`` pass through)."""
    st = os.stat(path)
    _check(st, swapped=False)
    return st


def open_regular(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """A read-only descriptor of ``path`` and its stat (taken on the descriptor), if ``path`` is a regular file both
    before it is opened and once it is; the caller closes the descriptor."""
    stat_regular(path)
    fd = os.open(path, OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        _check(st, swapped=True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _check(st: os.stat_result, swapped: bool) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise NotRegularFile(DIRECTORY, swapped)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(SPECIAL, swapped)
