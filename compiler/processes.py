"""Process-level helpers for the checks that walk a whole fleet's records: the collector paused while a big
record is read, and a check split over two processes.

Kept free of the compiler's heavy imports: `sty build` and `sty diff` with nothing to do run only these.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

# below this many hosts (about 50 recorded files each) a fork (10 ms, more with a big heap) costs more than it saves
SPLIT_FROM = 256


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a large structure is built (a parsed state record, a loaded fleet).
    Why: those phases only grow the heap, so each full collection walked every object made so far to free
    almost nothing (a quarter of a 10,000-host `sty check`, half a second of its no-op build)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def fork_pays(hosts: int) -> bool:
    """Whether checking `hosts` hosts' records in a forked child is worth it and safe: enough of them (a fork costs
    10 ms and more), a second CPU, and no other thread running (a fork copies their locks in whatever state they
    are: one held by a thread hashing or writing would never be released in the child)."""
    return hosts >= SPLIT_FROM and len(os.sched_getaffinity(0)) >= 2 and threading.active_count() == 1


def in_two(items: Sequence[T], check: Callable[[Sequence[T]], object]) -> list:
    """`check` of the first half of `items` here and of the second half in a forked child, on two cores: the
    stat checks of a fleet's recorded files are system calls driven from Python, so threads would share one
    core (measured: slower than one thread). Returns both results, first half first. With one CPU, few items,
    or a child that failed, everything is checked here. `check` returning a false value for the first half
    stops the child early and skips the second (a caller wanting both must return a true value). A process with
    other threads running checks everything here: a fork copies their locks in whatever state they are (one held
    by a thread hashing or writing would never be released in the child)."""
    if not fork_pays(len(items)):
        return [check(items)]
    half = len(items) // 2
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its half, pickled to the parent, then gone without running any exit handler
        status = 1
        try:
            os.close(read_end)
            data = pickle.dumps(check(items[half:]), pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    data = None
    try:
        mine = check(items[:half])
        if mine:
            with os.fdopen(read_end, "rb") as source:
                read_end = -1
                data = source.read()
    finally:
        if data is None:  # its answer is not wanted (a false first half, or this half raised): not waited for
            os.kill(pid, signal.SIGKILL)
        if read_end >= 0:
            os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if not mine:
        return [mine]
    theirs = pickle.loads(data) if status == 0 and data else check(items[half:])
    return [mine, theirs]
