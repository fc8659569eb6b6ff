"""`make bench`: time and peak memory of the platform's stages at whole-system sizes.

Runs each stage as its own `phm run` process (a fresh JVM, as a scheduler
would) on configs/bench.yaml, sampling the resident memory of the whole
process tree (Python driver, JVM, Python workers) every 0.5 s, and writes
bench/results.json and bench/results.md. Repeats give a median; the machine
is shared, so quote medians and ratios, not single runs.

    python bench/bench.py [--sizes 100000 1000000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def _phm(stage: str, base: Path, size: int, *extra: str) -> list[str]:
    overrides = [
        f"synthetic.population={size}",
        *extra,
        *[f"paths.{key}={base / key}" for key in ("landing", "truth", "warehouse", "reports", "logs", "checkpoints")],
        f"linkage.model={base / 'models' / 'linkage.json'}",
        f"mlflow.tracking_uri=sqlite:///{base / 'mlflow.db'}",
        f"mlflow.artifact_location={base / 'mlartifacts'}",
    ]
    args = [*PHM, "run", stage, "--config", "configs/bench.yaml"]
    for override in overrides:
        args += ["--set", override]
    return args


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


def bench_size(size: int, repeats: int, work: Path) -> list[dict]:
    """The population refresh's stages at one size, as a monthly schedule would run them:
    generate all but the last month, ingest and link it (training the linkage model), deliver the last
    month, ingest and link that, ingest again (nothing new), measure the linkage against the truth, build the
    person model, segment the population and compare recorded with true prevalence, build the risk features,
    train, score and compare the risk models with the oracle, evaluate the historical programme, train the
    uplift models, choose the targets per PCN and compare all three with the truth, and profile the population."""
    steps = [
        ("generate", "generate", [f"synthetic.until={LAST_PERIOD_BUT_ONE}"]),
        ("ingest", "ingest (35 months)", []),
        ("link", "link (35 months, training the model)", []),
        ("generate", "generate (1 more month)", []),
        ("ingest", "ingest (monthly increment)", []),
        ("link", "link (monthly increment)", []),
        ("ingest", "ingest (nothing new)", []),
        ("evaluate_linkage", "evaluate_linkage", []),
        ("build_person_model", "build_person_model", []),
        ("segment", "segment", []),
        ("evaluate_person_model", "evaluate_person_model", []),
        ("features", "features", []),
        ("train_risk", "train_risk", []),
        ("score", "score", []),
        ("evaluate_risk", "evaluate_risk", []),
        ("evaluate_programme", "evaluate_programme", []),
        ("train_impactability", "train_impactability", []),
        ("target", "target", []),
        ("evaluate_impactability", "evaluate_impactability", []),
        ("profile", "profile", []),
    ]
    runs: dict[str, list[dict]] = {label: [] for _, label, _ in steps}
    for repeat in range(repeats):
        base = work / f"refresh-{size}"
        shutil.rmtree(base, ignore_errors=True)
        for stage, label, extra in steps:
            log = work / f"{label.split()[0]}-{size}-{repeat}-{len(runs[label])}-{label.replace(' ', '_')}.log"
            seconds, peak, code = measured_run(_phm(stage, base, size, *extra), log)
            if code != 0:
                raise SystemExit(f"bench: {label} at {size:,} failed (exit {code}); see {log}")
            run = {"seconds": round(seconds, 1), "peak_rss_gb": round(peak / 1e9, 2)}
            if stage == "generate" and label == "generate":
                calibration = json.loads((base / "truth" / "calibration_report.json").read_text())
                run["calibration_within"] = sum(f["within"] for f in calibration)
                run["calibration_figures"] = len(calibration)
                run["landing_gb"] = round(sum(p.stat().st_size for p in (base / "landing").rglob("*.*")) / 1e9, 2)
            if stage in SUMMARIES:
                run["summary"] = _summary(stage, log)
            runs[label].append(run)
        shutil.rmtree(base, ignore_errors=True)
    results = []
    for _, label, _ in steps:
        seconds = statistics.median(r["seconds"] for r in runs[label])
        results.append(
            {
                "stage": label,
                "people": size,
                "median_seconds": seconds,
                "seconds_per_100k_people": round(seconds / size * 100_000, 1),
                "median_peak_rss_gb": statistics.median(r["peak_rss_gb"] for r in runs[label]),
                "runs": runs[label],
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "bench"))
    args = parser.parse_args()
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        print(f"bench: {size:,} people x {args.repeats}", flush=True)
        for result in bench_size(size, args.repeats, work):
            results.append(result)
            print(f"  {result['stage']}: median {result['median_seconds']}s, peak {result['median_peak_rss_gb']} GB",
                  flush=True)  # fmt: skip
        write_results(out, results)  # after each size, so a long run leaves what it has measured
    print((out / "results.md").read_text())


def write_results(out: Path, results: list[dict]) -> None:
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 1e9, 1),
                    "python": platform.python_version()},
        "results": results,
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(document, indent=2))
    lines = [
        "| stage | people | median s | s per 100k | peak RSS GB | what it did | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        summary = r["runs"][-1].get("summary") or ""
        lines.append(f"| {r['stage']} | {r['people']:,} | {r['median_seconds']} | {r['seconds_per_100k_people']} | "
                     f"{r['median_peak_rss_gb']} | {summary} | {len(r['runs'])} |")  # fmt: skip
    (out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
