"""Work in forked worker processes that ends in an error naming the work, never in a wait.

multiprocessing.Pool, and spaCy's `n_process`, wait forever for the results of a worker that died
(killed for memory, a signal, a crash in C code). A ProcessPoolExecutor raises instead; `map_in_processes`
keeps few tasks in flight, so a failure can be pinned to them, and `run_alone` runs one item in a process
of its own to find which one fails.

Workers are forked: they inherit `fn` and everything it refers to (a loaded spaCy pipeline), so `fn`
need not be picklable; items and results are. fork rather than spawn also because spawn re-runs
`__main__`, which in a Snakemake script means running the rule again.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

_FN: Callable | None = None  # set before a pool forks; the workers call it


def _call(item):
    return _FN(item)


class WorkerFailed(Exception):
    """Item `first` raised `reason`, or a worker died while items first..last were in flight."""

    def __init__(self, first: int, last: int, reason: str):
        super().__init__(reason)
        self.first, self.last, self.reason = first, last, reason


def reason_of(error: BaseException) -> str:
    """"Type: last line of the message", short: what an error message should quote of an exception."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1]}"[:500] if lines else type(error).__name__


DIED = "the worker process died (killed, or out of memory?)"


def map_in_processes(fn: Callable, items: Iterable, processes: int) -> Iterator:
    """fn(item) for each item, in order; in `processes` forked processes when above 1, with at most two
    items per process in flight. Raises WorkerFailed (its __cause__ the original error)."""
    global _FN
    if processes <= 1:
        for k, item in enumerate(items):
            try:
                yield fn(item)
            except Exception as exc:  # noqa: BLE001 -- re-raised naming the item
                raise WorkerFailed(k, k, reason_of(exc)) from exc
        return
    _FN = fn
    try:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            items = iter(items)
            pending: deque = deque()
            done = submitted = 0
            while True:
                while len(pending) < 2 * processes:
                    item = next(items, _END)
                    if item is _END:
                        break
                    pending.append(pool.submit(_call, item))
                    submitted += 1
                if not pending:
                    return
                try:
                    result = pending[0].result()
                except BrokenProcessPool as exc:
                    raise WorkerFailed(done, submitted - 1, DIED) from exc
                except Exception as exc:  # noqa: BLE001 -- raised in the worker
                    raise WorkerFailed(done, done, reason_of(exc)) from exc
                pending.popleft()
                done += 1
                yield result
    finally:
        _FN = None


_END = object()


def run_alone(fn: Callable, item, *, forked: bool) -> str | None:
    """Why fn(item) fails (reason_of, or DIED), or None when it does not; in a forked process of its own
    when `forked` (the failure may be a process dying), else in this one."""
    global _FN
    if not forked:
        try:
            fn(item)
        except Exception as exc:  # noqa: BLE001 -- the answer
            return reason_of(exc)
        return None
    _FN = fn
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            pool.submit(_call, item).result()
    except BrokenProcessPool:
        return DIED
    except Exception as exc:  # noqa: BLE001 -- the answer
        return reason_of(exc)
    finally:
        _FN = None
    return None
