"""Independent pieces of one stage run at the same time, each as soon as the pieces it needs are done.

Spark runs jobs submitted from several driver threads at once (PySpark pins
each Python thread to a JVM thread). On small tables a job's time is mostly
the driver's planning and scheduling, which then overlaps; on large ones a
job with few tasks leaves cores idle that another job fills. With
`workers=1` the pieces run one after the other in a stable order, as before.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def run_in_dependency_order(
    tasks: Mapping[str, Callable[[], T]],
    needs: Mapping[str, Iterable[str]] | None = None,
    workers: int = 1,
) -> dict[str, T]:
    """Run every task (name -> callable), at most `workers` at once, each after the tasks it `needs`
    (names not among the tasks are ignored: already there); what others need starts first. Returns
    name -> result. If a task raises, no further task starts, the running ones finish, and the first error
    is raised as it was."""
    needs = needs or {}
    graph = {name: [n for n in needs.get(name, ()) if n in tasks] for name in tasks}
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    needed = {n for wanted in graph.values() for n in wanted}

    def in_order(names) -> list[str]:
        """What others wait for first (it shortens the critical path), then by name."""
        return sorted(names, key=lambda name: (name not in needed, name))

    results: dict[str, T] = {}
    if workers <= 1:
        while sorter.is_active():
            for name in in_order(sorter.get_ready()):
                results[name] = tasks[name]()
                sorter.done(name)
        return results
    running: dict[Future, str] = {}
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="phm-task") as pool:
        ready: list[str] = []
        while sorter.is_active() and error is None:
            ready = in_order([*ready, *sorter.get_ready()])
            while ready and len(running) < workers:
                name = ready.pop(0)
                running[pool.submit(tasks[name])] = name
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                if future.exception() is not None:
                    error = error or future.exception()
                    continue
                results[name] = future.result()
                sorter.done(name)
        wait(running)  # let the running ones finish before raising: their writes are rolled back as a whole
    if error is not None:
        raise error
    return results
