"""`make drill`: kill -9 a real refresh in the middle of every stage's write, and compare what it ends with.

Two refreshes of the same sample (configs/test.yaml, 2,000 people, one delivery), each through the CLI in
processes of its own, as a scheduler runs them:

1. uninterrupted: `phm refresh` once;
2. killed: `phm refresh` again and again; in each attempt the first stage not killed yet is sent SIGKILL by
   its own process just after its first table commit (the stage has written part of its outputs), or, for a
   stage that writes no table (generate, report), just before its ledger row is appended (its files are
   written, the run is not recorded). The next attempt takes the writer lock, finds the dead run's marker,
   puts its outputs back and resumes the refresh at that stage.

Then every table of the two warehouses is compared row for row (`exceptAll` both ways), leaving out the
columns that are a run's own by design (run ids, the times things were done). The figures go to
bench/kill_drill.json and bench/kill_drill.md; docs/trust.md quotes them.

    python bench/kill_drill.py [--work bench/work/drill] [--stages link train_risk]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.conftest: the suite's config overrides and its pseudonymisation key

from tests.conftest import TEST_CONFIG, TEST_KEY_HEX, cli_arguments, test_overrides  # noqa: E402

# In the killed refresh's processes: the hooks, then the CLI. argv: state file, CLI arguments. Run from a file:
# under `python -c`, importing pyspark.sql.connect (Great Expectations does) takes the process for a doctest run
# and exits 0 when Spark Connect's dependencies are missing.
KILLING_REFRESH = """
    import json, os, signal, sys
    from pathlib import Path
    from phm import cli
    from phm.runtime import catalog, ledger

    state = Path(sys.argv[1])
    only = set(json.loads(os.environ.get("DRILL_STAGES", "[]")))

    def kill_if_due(job, where):
        killed = json.loads(state.read_text()) if state.exists() else []
        if job in (None, "refresh") or job in [k["stage"] for k in killed] or (only and job not in only):
            return
        killed.append({"stage": job, "where": where})
        state.write_text(json.dumps(killed))
        os.kill(os.getpid(), signal.SIGKILL)

    def job_of(run_id):
        return run_id.split("-", 1)[1].rsplit("-", 1)[0] if run_id else None

    written = catalog.Catalog._written
    def written_then_killed(self, name, before):
        version = written(self, name, before)
        if name != "ops.job_runs":  # the ledger's own append: a later crash point (test_reliability has it)
            kill_if_due(job_of(self.run_id), f"after committing {name} v{version}")
        return version
    catalog.Catalog._written = written_then_killed

    finish = ledger.Ledger.finish
    def killed_before_finishing(self, record):
        if record.status == "succeeded" and record.parent_run_id:
            kill_if_due(record.job, "after its last write, before its ledger row")
        return finish(self, record)
    ledger.Ledger.finish = killed_before_finishing

    sys.argv = ["phm", *sys.argv[2:]]
    sys.exit(cli.main(sys.argv[1:]))
"""

# Columns a run writes about itself (which run, when), and the number the MLflow registry gives a model version
# (never a number twice: a killed run's deleted version keeps its number): equal only by chance between two runs.
RUN_OWN_SUFFIXES = ("_run_id", "_at", "run_id", "model_version")
# The same numbers inside labels ("uplift_t v2"): compared as "uplift_t v#". That the two registries hold the
# same live versions with the same aliases is checked on the registries themselves (`registries`).
VERSION_IN_TEXT = r"\bv[0-9]+\b"


def env() -> dict[str, str]:
    return {**os.environ, "PHM_PSEUDONYM_KEY": TEST_KEY_HEX, "PYTHONPATH": str(REPO)}


def uninterrupted(base: Path) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "phm", "refresh", *cli_arguments(base)], cwd=REPO, env=env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"drill: the uninterrupted refresh failed:\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def killed_at_every_stage(base: Path, stages: list[str]) -> tuple[list[dict], float]:
    state = base / "killed.json"
    script = base / "killing_refresh.py"
    script.write_text(textwrap.dedent(KILLING_REFRESH))
    attempts = json.loads((base / "attempts.json").read_text()) if (base / "attempts.json").exists() else []
    started = time.monotonic()
    while True:
        attempt_started = time.monotonic()
        code = [sys.executable, str(script), str(state), "refresh", *cli_arguments(base)]
        done = subprocess.run(code, cwd=REPO, env={**env(), "DRILL_STAGES": json.dumps(stages)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        seconds = round(time.monotonic() - attempt_started, 1)
        killed = json.loads(state.read_text()) if state.exists() else []
        if done.returncode == -signal.SIGKILL:
            attempts.append({**killed[-1], "seconds": seconds})
            (base / "attempts.json").write_text(json.dumps(attempts))
            print(f"drill: killed {killed[-1]['stage']} {killed[-1]['where']} ({seconds} s)", flush=True)
            continue
        if done.returncode != 0:
            sys.exit(f"drill: a refresh after {len(attempts)} kills failed:\n{done.stderr[-3000:]}")
        attempts.append({"stage": None, "where": "finished", "seconds": seconds})
        return attempts, time.monotonic() - started


def deliveries(reference: Path, killed: Path) -> dict:
    """The landing files the two refreshes generated, compared byte for byte, and a Parquet file whose bytes
    differ by its rows: parquet-mr writes each column chunk's list of encodings in the order of a hash set of
    enums, which changes from one JVM to the next, so the same rows give other footer bytes."""
    import pyarrow.parquet as pq

    def files(base: Path) -> dict[str, Path]:
        landing = base / "landing"
        return {str(p.relative_to(landing)): p for p in landing.rglob("*") if p.is_file() and p.name[0] != "."}

    ours, theirs = files(reference), files(killed)
    same_bytes, same_rows, differing = 0, [], []
    for name in sorted(set(ours) | set(theirs)):
        a, b = ours.get(name), theirs.get(name)
        if a and b and a.read_bytes() == b.read_bytes():
            same_bytes += 1
        elif a and b and a.suffix == ".parquet" and pq.read_table(a).equals(pq.read_table(b)):
            same_rows.append(name)
        else:
            differing.append(name)
    return {"files": len(set(ours) | set(theirs)), "byte_identical": same_bytes,
            "parquet_same_rows_other_bytes": same_rows, "differing": differing}  # fmt: skip


def registries(reference: Path, killed: Path) -> dict:
    """Each refresh's MLflow registry: per registered model, how many live versions and which of them (by
    order of registration) each alias points to; equal when a killed run's registrations were taken back."""
    from mlflow import MlflowClient

    def summary(base: Path) -> dict:
        client, models = MlflowClient(f"sqlite:///{base / 'mlflow.db'}"), {}
        for model in client.search_registered_models():
            live = sorted(int(v.version) for v in client.search_model_versions(f"name = '{model.name}'"))
            aliases = {alias: live.index(int(v)) + 1 for alias, v in sorted(model.aliases.items())}
            models[model.name] = {"live_versions": len(live), "alias_to_nth_live_version": aliases}
        return dict(sorted(models.items()))

    ours, theirs = summary(reference), summary(killed)
    return {"equal": ours == theirs, "uninterrupted": ours, "killed": theirs}


def compare(reference: Path, killed: Path, same_rows_other_bytes: list[str]) -> list[dict]:
    """Every table of the two warehouses, row for row; a delivery's checksum is left out where the files'
    rows are equal and only their bytes are not (`deliveries`)."""
    from pyspark.sql import functions as F

    from phm.config import load_config
    from phm.runtime.catalog import Catalog
    from phm.runtime.recovery import INTERRUPTED
    from phm.runtime.spark import get_spark
    from phm.tables import JOB_RUNS

    config = load_config(str(TEST_CONFIG), test_overrides(reference))
    spark = get_spark(config)
    ours = Catalog(spark, config.resolve(config.paths.warehouse))
    theirs = Catalog(spark, str(killed / "warehouse"))
    rows = []
    for name in sorted(set(ours.existing_tables()) | set(theirs.existing_tables())):
        if not (ours.exists(name) and theirs.exists(name)):
            rows.append({"table": name, "equal": False, "why": "in one warehouse only"})
            continue
        a, b = ours.read(name), theirs.read(name)
        if name == JOB_RUNS.name:  # differs by design: the killed refresh has a row for each dead run
            interrupted = b.where(F.col("error").startswith(INTERRUPTED)).count()
            rows.append({"table": name, "rows": a.count(), "rows_killed": b.count(), "equal": None,
                         "why": f"{interrupted} runs recorded as interrupted and put back"})  # fmt: skip
            continue
        kept = [c for c in a.columns if not c.endswith(RUN_OWN_SUFFIXES)]
        masked = {"file", "checksum"} <= set(kept) and bool(same_rows_other_bytes)
        if masked:
            a, b = (f.withColumn("checksum", F.when(~F.col("file").isin(same_rows_other_bytes), F.col("checksum")))
                    for f in (a, b))  # fmt: skip
        a, b = comparable(a, kept), comparable(b, kept)
        left, right = a, b
        missing, extra = left.exceptAll(right).count(), right.exceptAll(left).count()
        row = {"table": name, "rows": a.count(), "rows_killed": b.count(), "missing": missing, "extra": extra,
               "equal": missing == extra == 0, "left_out": [c for c in a.columns if c not in kept]}  # fmt: skip
        if masked:
            row["why"] = f"checksum of the {len(same_rows_other_bytes)} Parquet deliveries left out (same rows)"
        if not row["equal"]:  # which columns differ: each compared alone
            row["columns_differing"] = [c for c in kept if differs(a.select(c), b.select(c))]
        rows.append(row)
    spark.stop()
    return rows


EQUAL = {True: "yes", False: "no", None: "(not compared)"}


def comparable(frame, columns):
    """The columns, maps as their sorted entries (set operations refuse map columns), model version numbers
    in text as v#."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    def column(name):
        kind = types[name]
        if isinstance(kind, T.MapType):
            return F.to_json(F.array_sort(F.map_entries(name))).alias(name)
        if isinstance(kind, T.StringType):
            return F.regexp_replace(name, VERSION_IN_TEXT, "v#").alias(name)
        return F.col(name)

    types = {f.name: f.dataType for f in frame.schema.fields}
    return frame.select(*[column(c) for c in columns])


def differs(a, b) -> bool:
    return bool(a.exceptAll(b).limit(1).count() or b.exceptAll(a).limit(1).count())


def markdown(result: dict) -> str:
    attempts, d, r = len(result["attempts"]), result["deliveries"], result["registries"]
    compared = [t for t in result["tables"] if t["equal"] is not None]
    lines = [
        f"# kill -9 in every stage of a refresh ({result['date']})",
        "",
        f"Uninterrupted refresh {result['uninterrupted_seconds'] or '(an earlier drill)'} s; the killed one "
        f"{result['killed_seconds']:.0f} s in {attempts} processes ({attempts - 1} killed).",
        "",
        "| stage killed | where | attempt |",
        "|---|---|---|",
        *[f"| {a['stage'] or '(finished)'} | {a['where']} | {a['seconds']} s |" for a in result["attempts"]],
        "",
        f"Landing files generated by each: {d['files']}; byte-identical: {d['byte_identical']}; Parquet files "
        f"with the same rows in other bytes (parquet-mr's footer order varies between JVMs): "
        f"{len(d['parquet_same_rows_other_bytes'])}; differing: {len(d['differing'])} {d['differing'] or ''}".rstrip()
        + ".",
        "",
        f"MLflow registries equal (live versions per model; the nth live version each alias points to): "
        f"{'yes' if r['equal'] else 'no'}: {json.dumps(r['killed'])}"
        + ("" if r["equal"] else f" against, uninterrupted, {json.dumps(r['uninterrupted'])}") + ".",
        "",
        f"Tables compared row for row: {len(compared)} (and ops.job_runs, by design not the same: below); "
        f"equal: {sum(t['equal'] for t in compared)}.",
        "",
        "| table | rows | equal | columns differing |",
        "|---|---|---|---|",
        *[f"| {t['table']} | {t.get('rows', '')} | {EQUAL[t['equal']]} | "
          f"{', '.join(t.get('columns_differing', [])) or t.get('why', '')} |" for t in result["tables"]],
        "",
        f"Left out everywhere: the columns ending {', '.join(RUN_OWN_SUFFIXES)} (a run's own, or numbered by "
        "MLflow); model version numbers in text compared as v#.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "drill")
    parser.add_argument("--stages", nargs="*", default=[], help="kill only these stages (default: every one)")
    parser.add_argument(
        "--reuse-uninterrupted", action="store_true", help="keep an earlier drill's uninterrupted refresh (--work)"
    )
    parser.add_argument("--continue-killed", action="store_true", help="go on with an earlier drill's killed refresh")
    parser.add_argument("--compare-only", action="store_true", help="compare an earlier drill's two refreshes again")
    args = parser.parse_args()
    reference, killed = args.work / "uninterrupted", args.work / "killed"
    if args.compare_only:
        report(json.loads((REPO / "bench" / "kill_drill.json").read_text()), reference, killed)
        return
    if not args.continue_killed:
        shutil.rmtree(killed, ignore_errors=True)
    if args.reuse_uninterrupted and (reference / "warehouse").is_dir():
        uninterrupted_seconds = None
    else:
        shutil.rmtree(reference, ignore_errors=True)
        uninterrupted_seconds = uninterrupted(reference)
    killed.mkdir(parents=True, exist_ok=True)
    print(f"drill: uninterrupted refresh {uninterrupted_seconds} s", flush=True)
    attempts, killed_seconds = killed_at_every_stage(killed, args.stages)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "uninterrupted_seconds": uninterrupted_seconds and round(uninterrupted_seconds, 1),
        "killed_seconds": round(killed_seconds, 1),
        "attempts": attempts,
    }
    report(result, reference, killed)


def report(result: dict, reference: Path, killed: Path) -> None:
    """Compare the two refreshes' deliveries, registries and tables into `result`; write the json and md."""
    result["deliveries"] = deliveries(reference, killed)
    result["registries"] = registries(reference, killed)
    result["tables"] = compare(reference, killed, result["deliveries"]["parquet_same_rows_other_bytes"])
    (REPO / "bench" / "kill_drill.json").write_text(json.dumps(result, indent=2) + "\n")
    (REPO / "bench" / "kill_drill.md").write_text(markdown(result))
    differing = [t["table"] for t in result["tables"] if t["equal"] is False]
    compared = [t for t in result["tables"] if t["equal"] is not None]
    print(f"drill: {sum(t['equal'] for t in compared)} of {len(compared)} tables equal; registries equal: "
          f"{result['registries']['equal']}"
          + (f"; differing: {', '.join(differing)}" if differing else ""))  # fmt: skip


if __name__ == "__main__":
    main()
