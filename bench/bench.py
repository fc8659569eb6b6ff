"""`make bench`: time and peak memory of the platform's stages at whole-system sizes.

Runs each stage as its own `phm run` process (a fresh JVM, as a scheduler
would) on configs/bench.yaml, sampling the resident memory of the whole
process tree (Python driver, JVM, Python workers) every 0.5 s, and writes
bench/results.json and bench/results.md. Repeats give a median; the machine
is shared, so quote medians and ratios, not single runs.

    python bench/bench.py [--sizes 100000 1000000] [--repeats 1] [--phases full increment nothing_new]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHM = [sys.executable, "-m", "phm"]
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    members, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in members:
                members.add(child)
                frontier.append(child)
    return sum(rss.get(pid, 0) for pid in members)


def measured_run(args: list[str], log: Path) -> tuple[float, int, int]:
    """(wall seconds, peak tree RSS in bytes, exit code) of one command."""
    peak = 0
    with log.open("w") as out:
        started = time.monotonic()
        process = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss_bytes(process.pid))
                done.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        done.set()
        sampler.join()
    return time.monotonic() - started, peak, code


LAST_PERIOD_BUT_ONE = "2026-02"  # configs/base.yaml: 36 monthly periods ending 2026-03


def _settings(base: Path, size: int, *extra: str) -> list[str]:
    """--config and --set arguments of the benchmark warehouse under `base`."""
    overrides = [
        f"synthetic.population={size}",
        *extra,
        *[f"paths.{key}={base / key}" for key in ("landing", "truth", "warehouse", "reports", "logs", "checkpoints")],
        f"linkage.model={base / 'models' / 'linkage.json'}",
        f"mlflow.tracking_uri=sqlite:///{base / 'mlflow.db'}",
        f"mlflow.artifact_location={base / 'mlartifacts'}",
    ]
    return ["--config", "configs/bench.yaml", *[a for o in overrides for a in ("--set", o)]]


def _phm(stage: str, base: Path, size: int, *extra: str) -> list[str]:
    return [*PHM, "run", stage, *_settings(base, size, *extra)]


def side_by_side(base: Path, size: int, work: Path, link_log: Path, evaluation_log: Path) -> dict:
    """bench/splink_duckdb.py on the same warehouse: Splink's predict and clustering on DuckDB beside the link
    stage's on Spark (its predict_and_cluster timing) and their quality."""
    log = work / f"{size}-splink_duckdb.log"
    seconds, peak, code = measured_run([sys.executable, "bench/splink_duckdb.py", *_settings(base, size)], log)
    if code != 0:
        raise SystemExit(f"bench: the DuckDB side-by-side at {size:,} failed (exit {code}); see {log}")
    duck = json.loads(log.read_text().strip().splitlines()[-1])
    spark_seconds = re.search(r"predict_and_cluster ([0-9.]+)s", link_log.read_text())
    spark_f1 = re.search(r"F1 ([0-9.]+)", evaluation_log.read_text())
    run = {"seconds": round(seconds, 1), "peak_rss_gb": round(peak / 1e9, 2), "duckdb": duck}
    if spark_seconds:
        run["spark_predict_and_cluster_seconds"] = float(spark_seconds.group(1))
        run["spark_over_duckdb"] = round(float(spark_seconds.group(1)) / duck["predict_and_cluster_seconds"], 2)
    run["summary"] = (f"DuckDB predict + cluster {duck['predict_and_cluster_seconds']}s (Spark link stage "
                      f"{run.get('spark_predict_and_cluster_seconds')}s, ratio {run.get('spark_over_duckdb')}); "
                      f"Splink-only F1 on DuckDB {duck['f1']:.4f}, the platform's on Spark "
                      f"{spark_f1.group(1) if spark_f1 else '?'}")  # fmt: skip
    return run


# What each stage logs about what it did: (logger prefix, words in the line).
SUMMARIES = {
    "ingest": ("ingest: ", ("rows in,", "nothing new")),
    "link": ("link: ", ("persons (",)),
    "evaluate_linkage": ("evaluate_linkage: ", ("F1 ",)),
    "build_person_model": ("build_person_model: ", ("events,",)),
    "segment": ("segment: ", ("living persons",)),
    "features": ("features: ", ("persons",)),
    "train_risk": ("train_risk: ", ("validation AUC",)),
    "score": ("score: ", ("high:",)),
    "evaluate_risk": ("evaluate_risk: ", ("oracle AUC",)),
    "evaluate_programme": ("evaluate_programme: ", ("did_ipw:",)),
    "train_impactability": ("train_impactability: ", ("held-out Qini",)),
    "target": ("target: ", ("people chosen",)),
    "evaluate_impactability": ("evaluate_impactability: ", ("targeting_true_admissions_avoided uplift",)),
    "profile": ("profile: ", ("published rows suppressed",)),
}


def _summary(stage: str, log: Path) -> str | None:
    """The stage's last summary line (e.g. "N rows in, ... accepted, ... quarantined")."""
    if stage not in SUMMARIES:
        return None
    prefix, words = SUMMARIES[stage]
    lines = [line for line in log.read_text().splitlines() if prefix in line and any(w in line for w in words)]
    return lines[-1].split(prefix, 1)[1] if lines else None


PHASES = ("full", "increment", "nothing_new")


def refresh_stages() -> list[str]:
    """Every stage a plain `phm refresh` runs, in its order (the job registry's)."""
    from phm.runtime.jobs import discover_jobs, pipeline_order

    return pipeline_order(discover_jobs())


def steps_of(phase: str, stages: list[str]) -> list[tuple[str, list[str]]]:
    """(stage, overrides) of one phase: the whole refresh over 35 months (`full`), then the 36th month delivered
    and the refresh again (`increment`), then once more with nothing new (`nothing_new`)."""
    if phase == "full":
        return [("generate", [f"synthetic.until={LAST_PERIOD_BUT_ONE}"])] + [(s, []) for s in stages if s != "generate"]
    if phase == "increment":
        return [(s, []) for s in stages]
    return [(s, []) for s in stages if s != "generate"]


def bench_size(size: int, repeats: int, work: Path, phases: list[str], record) -> list[dict]:
    """Each phase's stages at one size, each a fresh `phm run` process as a scheduler runs them; `record(rows)`
    is called after every stage (so a long run leaves what it measured)."""
    stages = refresh_stages()
    rows: list[dict] = []
    for repeat in range(repeats):
        base = work / f"refresh-{size}"
        shutil.rmtree(base, ignore_errors=True)
        for phase in phases:
            for stage, extra in steps_of(phase, stages):
                log = work / f"{size}-{repeat}-{phase}-{stage}.log"
                seconds, peak, code = measured_run(_phm(stage, base, size, *extra), log)
                if code != 0:
                    raise SystemExit(f"bench: {phase} {stage} at {size:,} failed (exit {code}); see {log}")
                run = {"seconds": round(seconds, 1), "peak_rss_gb": round(peak / 1e9, 2)}
                if stage == "generate" and phase == "full":
                    calibration = json.loads((base / "truth" / "calibration_report.json").read_text())
                    run["calibration_within"] = sum(f["within"] for f in calibration)
                    run["calibration_figures"] = len(calibration)
                    run["landing_gb"] = round(sum(p.stat().st_size for p in (base / "landing").rglob("*.*")) / 1e9, 2)
                if stage in SUMMARIES:
                    run["summary"] = _summary(stage, log)
                _add(rows, phase, stage, size, run)
                if (phase, stage) == ("full", "evaluate_linkage"):
                    link_log = work / f"{size}-{repeat}-full-link.log"
                    _add(rows, "side_by_side", "splink_duckdb", size, side_by_side(base, size, work, link_log, log))
                record(rows)
        shutil.rmtree(base, ignore_errors=True)
    return rows


def _add(rows: list[dict], phase: str, stage: str, size: int, run: dict) -> None:
    row = next((r for r in rows if (r["phase"], r["stage"], r["people"]) == (phase, stage, size)), None)
    if row is None:
        row = {"phase": phase, "stage": stage, "people": size, "runs": []}
        rows.append(row)
    row["runs"].append(run)
    row["median_seconds"] = statistics.median(r["seconds"] for r in row["runs"])
    row["seconds_per_100k_people"] = round(row["median_seconds"] / size * 100_000, 1)
    row["median_peak_rss_gb"] = statistics.median(r["peak_rss_gb"] for r in row["runs"])


def totals(rows: list[dict]) -> list[dict]:
    """Per size and phase: every stage, and the refresh a real ICS runs (no generate, no evaluate_* stages,
    which read the synthetic truth store)."""
    out = []
    for size in sorted({r["people"] for r in rows}):
        for phase in PHASES:
            mine = [r for r in rows if r["people"] == size and r["phase"] == phase]
            if not mine:
                continue
            real = [r for r in mine if r["stage"] != "generate" and not r["stage"].startswith("evaluate_")]
            out.append({"people": size, "phase": phase, "stages": len(mine),
                        "all_stages_seconds": round(sum(r["median_seconds"] for r in mine), 1),
                        "refresh_seconds": round(sum(r["median_seconds"] for r in real), 1),
                        "peak_rss_gb": max(r["median_peak_rss_gb"] for r in mine)})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--out", default=str(REPO / "bench"))
    args = parser.parse_args()
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    done: list[dict] = []
    for size in args.sizes:
        print(f"bench: {size:,} people x {args.repeats}, phases {', '.join(args.phases)}", flush=True)
        earlier = list(done)
        done += bench_size(size, args.repeats, work, args.phases, lambda rows, e=earlier: write_results(out, e + rows))
    print((out / "results.md").read_text())


def write_results(out: Path, results: list[dict]) -> None:
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 1e9, 1),
                    "python": platform.python_version()},
        "totals": totals(results),
        "results": results,
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(document, indent=2))
    lines = [
        "| people | phase | refresh s (no generate, no evaluate_*) | all stages s | peak RSS GB |",
        "|---|---|---|---|---|",
        *[f"| {t['people']:,} | {t['phase']} | {t['refresh_seconds']} | {t['all_stages_seconds']} | "
          f"{t['peak_rss_gb']} |" for t in totals(results)],
        "",
        "| people | phase | stage | median s | s per 100k | peak RSS GB | what it did | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in results:
        summary = r["runs"][-1].get("summary") or ""
        lines.append(f"| {r['people']:,} | {r['phase']} | {r['stage']} | {r['median_seconds']} | "
                     f"{r['seconds_per_100k_people']} | {r['median_peak_rss_gb']} | {summary} | "
                     f"{len(r['runs'])} |")  # fmt: skip
    (out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
