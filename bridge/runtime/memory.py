"""Handing back to the operating system what starting up used and freed; tuning the collector."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc

# Allocations (less frees) between two young-generation collections. Python's 700 makes the
# few hundred short-lived containers of each webhook (its parsed JSON, its events) trigger one
# every few requests: about a tenth of the request path's CPU (bench/accept.py).
YOUNG_THRESHOLD = 10_000


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


def tune_collector() -> None:
    """Set the collector for a long-running daemon, once it has started.

    What start-up built (modules, models, the config) lives as long as the process: frozen,
    it is no longer walked by every full collection. Process-wide, so only `smsbridge run`
    calls it, not a daemon started inside another program (the tests).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
