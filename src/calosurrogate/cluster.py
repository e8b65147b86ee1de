"""Running a sharded job's shards on Dask (``dask.distributed``): any scheduler by its address (one
started by hand, by ``dask-jobqueue`` on a batch system, ...) or a local cluster of N worker
processes on this machine.

Each shard is one task whose result is its file; the job's output is made from the files only
when every task has finished, so a killed job loses at most the shards being written.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process the moment its parent process ``parent`` dies.

    Called first thing in a worker process (a process pool's initializer, a Dask worker's setup):
    a killed job then takes its workers with it at once, instead of leaving them at work on
    shards or chunks nobody collects while a resumed job starts its own. SIGKILL because Geant4
    installs handlers for the catchable signals; outputs are written atomically, so nothing half
    written survives. Does nothing where ``parent`` is not this process's parent (a remote
    cluster's worker, whose parent is its own nanny) or off Linux.
    """
    if not sys.platform.startswith("linux") or os.getppid() != parent:
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)


class DaskUnavailable(OSError):
    """dask.distributed is not installed (an OSError, as a missing Geant4 is: the command line
    reports it in one line)."""


@contextmanager
def dask_client(scheduler: str | None = None, workers: int = 1) -> Iterator[Any]:
    """A ``dask.distributed.Client``: of the scheduler at ``scheduler`` (``tcp://host:8786``), else of
    a local cluster of ``workers`` processes with one thread each (torch and numpy then use one
    core per worker: Dask sets ``OMP_NUM_THREADS=1`` in its workers).

    Raises:
        DaskUnavailable: Without dask.distributed.
        ValueError: ``workers`` < 1.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise DaskUnavailable("sharded jobs run on Dask: pip install 'calosurrogate[dask]'") from err
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        # Local workers are this process's children (their nannies live here): a killed job takes
        # them at once. Dask's own watch (a thread in each worker) needs the GIL, which a shard's
        # compiled code may hold for seconds. Run now and on every worker that (re)starts.
        client.register_worker_callbacks(setup=functools.partial(die_with_parent, os.getpid()))
        yield client


def run_tasks(
    client: Any,
    function: Callable[..., Any],
    arguments: Sequence[tuple],
    sizes: Sequence[int],
    description: str,
    progress: bool = True,
    shared: dict[str, Any] | None = None,
) -> tuple[list[Any], float]:
    """``function(*arguments[i], **shared)`` for every ``i`` on the cluster; returns the results in
    order and the wall seconds. ``shared`` values (a model) are sent to the workers once.

    The first task that raises stops the job with its error (the others are cancelled).
    """
    from distributed import as_completed

    start = time.perf_counter()
    shared = {name: client.scatter(value, broadcast=True) for name, value in (shared or {}).items()}
    futures = [client.submit(function, *args, **shared, pure=False) for args in arguments]
    index = {future.key: i for i, future in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    bar = tqdm(total=sum(sizes), desc=description, unit="shower", disable=not progress)
    try:
        for future in as_completed(futures):
            i = index[future.key]
            results[i] = future.result()
            bar.update(sizes[i])
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()
    return results, time.perf_counter() - start


__all__ = ["DaskUnavailable", "dask_client", "die_with_parent", "run_tasks"]
