"""Running a sharded job's shards on Dask (``dask.distributed``): any scheduler by its address (one
started by hand, by ``dask-jobqueue`` on a batch system, ...) or a local cluster of N worker
processes on this machine.

Each shard is one task whose result is its file; the job's output is made from the files only
when every task has finished, so a killed job loses at most the shards being written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm


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


__all__ = ["DaskUnavailable", "dask_client", "run_tasks"]
