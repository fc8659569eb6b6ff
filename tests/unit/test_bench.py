"""bench/bench.py: the stage each stretch of a refresh process's output belongs to; the results a run replaces."""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import subprocess
import sys

from ..conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("phm_bench", REPO / "bench" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


bench = _bench()


def test_stage_lines_begin_stages_and_a_resumed_stage_does_not():
    assert bench.stage_begun("07:41:02 stage 3/21: link\n") == "link"
    assert bench.stage_begun("07:41:02 stage 12/21: evaluate_risk") == "evaluate_risk"
    resumed = "07:41:02 stage 3/21: link was completed by run 20261202-link-ab12 of a failed refresh; resuming after it"
    assert bench.stage_begun(resumed) is None
    assert bench.stage_begun("07:41:09 link: 3530851 records -> 100441 persons (profiles 68.8s)") is None


def test_a_process_output_is_cut_into_its_stages_with_their_lines_times_and_summaries(tmp_path):
    script = (
        "import time\n"
        "print('07:00:00 refresh r1: 2 stage(s): link, score', flush=True)\n"
        "print('07:00:00 stage 1/2: link', flush=True)\n"
        "time.sleep(1.0)\n"
        "print('07:00:01 link: 10 records -> 4 persons (profiles 0.1s)', flush=True)\n"
        "print('07:00:01 stage 2/2: score', flush=True)\n"
        "time.sleep(0.4)\n"  # alive while that boundary is read (a process that has exited has no memory)
        "print('07:00:02 score: emergency_admission_lr high: 5 people, mean probability 0.300', flush=True)\n"
    )
    log = tmp_path / "refresh.log"
    seconds, sections, code = bench.measured_sections([sys.executable, "-c", script], log, bench.stage_begun)
    assert code == 0
    assert [s.name for s in sections] == ["session_start", "link", "score"]
    assert sections[0].lines == ["07:00:00 refresh r1: 2 stage(s): link, score"]
    assert sections[1].lines == ["07:00:00 stage 1/2: link", "07:00:01 link: 10 records -> 4 persons (profiles 0.1s)"]
    # The child slept longest inside link's stretch. Each boundary is timed when its line is read, which may lag its
    # writing on a busy machine: hence the margin, and the comparison with the stretch after it.
    assert sections[1].seconds > 0.3 and sections[1].seconds > sections[2].seconds
    assert sum(s.seconds for s in sections) <= seconds
    # Each stretch's start on the clock Spark's event log times tasks by, so its tasks can be told apart.
    gaps = [b.began_at - a.began_at for a, b in itertools.pairwise(sections)]
    assert all(abs(gap - s.seconds) < 0.05 for gap, s in zip(gaps, sections, strict=False))
    assert all(s.peak > 0 for s in sections)  # read at each boundary at least
    assert bench._summary("link", sections[1].lines) == "10 records -> 4 persons (profiles 0.1s)"
    assert bench._summary("score", sections[2].lines) == "emergency_admission_lr high: 5 people, mean probability 0.300"
    assert log.read_text().splitlines() == [line for s in sections for line in s.lines]


def test_a_failing_process_reports_its_exit_status(tmp_path):
    _, sections, code = bench.measured_sections(
        [sys.executable, "-c", "import sys; print('07:00:00 stage 1/1: link', flush=True); sys.exit(3)"],
        tmp_path / "failed.log",
        bench.stage_begun,
    )
    assert code == 3
    assert [s.name for s in sections] == ["session_start", "link"]


def test_a_run_of_some_stages_or_phases_replaces_only_their_rows():
    def row(mode, people, phase, stage):
        return {"mode": mode, "people": people, "phase": phase, "stage": stage}

    rows = [
        row("local[*]", 1000, "full", "generate"), row("local[*]", 1000, "full", "link"),
        row("local[*]", 1000, "side_by_side", "splink_spark_and_duckdb"), row("local[*]", 2000, "full", "generate"),
        row("standalone 2x1", 1000, "full", "generate"),
    ]  # fmt: skip
    kept = bench.rows_kept(rows, "local[*]", [1000], ["generate"])
    assert kept == [rows[1], rows[2], rows[3], rows[4]]
    assert bench.rows_kept(rows, "local[*]", [1000], ["link"]) == [rows[0], rows[3], rows[4]]
    assert bench.rows_kept(rows, "local[*]", [1000], None) == [rows[3], rows[4]]  # every stage: all its rows
    rows.append(row("local[*]", 1000, "increment", "link"))
    assert bench.rows_kept(rows, "local[*]", [1000], None, ["full"]) == [rows[3], rows[4], rows[5]]  # its phases
    started = row("local[*] one process", 1000, "full", "session_start")
    assert bench.rows_kept([started], "local[*] one process", [1000], ["link"]) == []  # goes with any stage


def test_one_process_runs_generate_apart_and_the_stages_named_in_one_refresh():
    full = bench.steps_of("full", ["generate", "ingest", "link"])
    generate = ("generate", [f"synthetic.until={bench.LAST_PERIOD_BUT_ONE}"])
    assert bench.in_one_process(full, ["generate", "ingest", "link"]) == [
        generate,
        ("refresh", ["refresh.exclude=['generate']", "refresh.stages=['ingest', 'link']"]),
    ]
    assert bench.in_one_process(full, None) == [generate, ("refresh", ["refresh.exclude=['generate']"])]
    nothing_new = bench.steps_of("nothing_new", ["generate", "ingest"])
    assert bench.in_one_process(nothing_new, ["generate", "ingest"]) == [
        ("refresh", ["refresh.exclude=['generate']", "refresh.stages=['ingest']"])
    ]


def test_a_child_with_its_parents_address_space_is_not_counted_again():
    layout = (7_000_000_000, 4096, 8192, 140_000_000)
    table = {
        10: bench.ProcessMemory(parent=1, resident=5_000_000_000, layout=layout),  # the JVM
        11: bench.ProcessMemory(parent=10, resident=5_000_200_000, layout=layout),  # its posix_spawn child, pre-exec
        12: bench.ProcessMemory(parent=10, resident=5_000_000_000, layout=(9, 1, 2, 3)),  # a child that has exec'd
        13: bench.ProcessMemory(parent=10, resident=900_000_000, layout=layout),  # same layout, its own memory
        20: bench.ProcessMemory(parent=2, resident=1, layout=layout),  # not in the tree
    }
    assert bench.tree_members(table, (10,)) == {10, 11, 12, 13}
    assert [bench.shares_parent_memory(pid, table) for pid in (10, 11, 12, 13)] == [False, True, False, False]


def test_the_memory_of_a_process_tree_counts_what_a_child_holds(tmp_path):
    holder = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "\"import time; block = b'x' * 300_000_000; print('held', flush=True); time.sleep(30)\"], "
        "stdout=subprocess.PIPE, text=True)\n"
        "print(child.stdout.readline().strip(), flush=True)\n"
        "time.sleep(30)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        memory = bench.tree_memory_bytes(process.pid)
        assert 300_000_000 <= memory < 300_000_000 + 150_000_000  # two interpreters' own pages on top
    finally:
        for pid in bench.tree_members(bench.process_table(), (process.pid,)):
            os.kill(pid, signal.SIGKILL)
        process.wait()


def test_rows_of_the_earlier_meter_keep_their_figures_flagged_as_upper_bounds(tmp_path):
    earlier = {"mode": "local[*]", "people": 1000, "phase": "full", "stage": "generate", "runs": [
        {"seconds": 10.0, "peak_rss_gb": 10.86}], "median_seconds": 10.0, "seconds_per_100k_people": 1000.0,
        "median_peak_rss_gb": 10.86}  # fmt: skip
    row = bench.with_memory_meter_named(earlier)
    assert (row["median_peak_memory_gb"], row["runs"][0]["peak_memory_gb"], row["earlier_meter"]) == (
        10.86,
        10.86,
        True,
    )
    bench.write_results(tmp_path, [row])
    markdown = (tmp_path / "results.md").read_text()
    assert "| 10.86\\* |" in markdown and markdown.rstrip().endswith(bench.EARLIER_METER_FOOTNOTE)
    assert bench.totals([row])[0]["earlier_meter"] is True


def test_a_stages_rows_carry_the_medians_of_its_task_seconds_and_seconds_with_no_task_running(tmp_path):
    rows: list[dict] = []
    for seconds, task_seconds, idle in ((50.0, 80.0, 9.0), (40.0, 70.0, 5.0), (45.0, 75.0, 7.0)):
        run = {"seconds": seconds, "peak_memory_gb": 3.0, "task_seconds": task_seconds, "idle_seconds": idle}
        bench._add(rows, "local[*]", "increment", "score", 1000, run)
    (row,) = rows
    assert (row["median_seconds"], row["median_task_seconds"], row["median_idle_seconds"]) == (45.0, 75.0, 7.0)
    bench.write_results(tmp_path, rows)
    markdown = (tmp_path / "results.md").read_text()
    assert "| local[*] | 1,000 | increment | score | 45.0 | 4500.0 | 3.0 | 75.0 | 7.0 |  | 3 |" in markdown
