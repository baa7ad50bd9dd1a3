"""Handing back to the operating system what starting up used and freed."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc


def return_startup_memory() -> None:
    """Hand back to the OS what loading the config and building models used and freed.

    glibc keeps freed heap pages; on a small host a daemon that idles for weeks should not.
    """
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(libc_name).malloc_trim(0)
