"""phm.runtime.concurrency: tasks run after what they need, at most `workers` at once, errors stop the rest."""

from __future__ import annotations

import threading
import time

import pytest

from phm.runtime.concurrency import run_in_dependency_order


def _recording(names, log, lock, running, peak, pause=0.05):
    def task(name):
        def run():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                log.append(("start", name))
            time.sleep(pause)
            with lock:
                running[0] -= 1
                log.append(("end", name))
            return name.upper()

        return run

    return {name: task(name) for name in names}


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_each_task_starts_after_what_it_needs_with_at_most_workers_at_once(workers):
    log, lock, running, peak = [], threading.Lock(), [0], [0]
    tasks = _recording(["practices", "ae", "gp_events", "deaths", "community"], log, lock, running, peak)
    needs = {"ae": ["practices"], "gp_events": ["practices", "not_loaded_this_run"]}
    results = run_in_dependency_order(tasks, needs, workers)
    assert results == {name: name.upper() for name in tasks}
    for task, needed in (("ae", "practices"), ("gp_events", "practices")):
        assert log.index(("end", needed)) < log.index(("start", task))
    assert peak[0] == min(workers, 3)  # practices, deaths and community are free from the start
    if workers == 1:
        assert [name for event, name in log if event == "start"] == [
            "practices", "community", "deaths", "ae", "gp_events"]  # what others need first  # fmt: skip


def test_a_failing_task_stops_new_starts_lets_the_running_finish_and_raises_its_error():
    finished = []

    def slow():
        time.sleep(0.2)
        finished.append("slow")

    def broken():
        raise ValueError("ae.yaml: bad rule")

    def dependent():
        finished.append("dependent")

    with pytest.raises(ValueError, match="ae.yaml: bad rule"):
        run_in_dependency_order({"slow": slow, "broken": broken, "dependent": dependent}, {"dependent": ["broken"]}, 2)
    assert finished == ["slow"]


def test_a_cycle_is_refused():
    with pytest.raises(ValueError, match="cycle"):
        run_in_dependency_order({"a": lambda: 1, "b": lambda: 2}, {"a": ["b"], "b": ["a"]}, 2)
