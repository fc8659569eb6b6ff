"""Run a source's rules as a Great Expectations 1.x suite on its Spark DataFrame and build Data Docs.

One ephemeral GX context per ingest run, with a Data Docs site under the
run's report folder. Results keep counts only: unexpected values are never
returned or rendered (`exclude_unexpected_values`, no partial lists), so no
identifier reaches a Data Docs page.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame

from phm.ingest.rules import CompiledRule, helper_name
from phm.ingest.standardise import raw_column

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
log = logging.getLogger(__name__)

RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0, "exclude_unexpected_values": True}
SITE = "phm_ingest"


@dataclass(frozen=True)
class ExpectationOutcome:
    success: bool
    unexpected: int | None


def expectation_for(rule: CompiledRule):
    """The GX expectation stating the same check as the rule's row predicate."""
    import great_expectations.expectations as E

    spec = rule.spec
    meta = {"rule": spec.name, "action": spec.action, "reason": spec.reason}
    common = {"meta": meta, "description": f"{spec.name}: {spec.reason} [{spec.action}]"}
    helper = helper_name(spec)
    check = spec.check
    if check == "not_null":
        return E.ExpectColumnValuesToNotBeNull(column=spec.column, **common)
    if check == "parses":
        from great_expectations.expectations.row_conditions import Column as Where

        return E.ExpectColumnValuesToNotBeNull(
            column=spec.column, row_condition=Where(name=raw_column(spec.column)).is_not_null(), **common
        )
    if check == "regex":
        return E.ExpectColumnValuesToMatchRegex(column=spec.column, regex=spec.pattern, **common)
    if check == "check_digit":
        return E.ExpectColumnValuesToBeInSet(column=helper, value_set=[True], **common)
    if check == "in_set":
        values = spec.values if spec.values is not None else rule.value_set
        return E.ExpectColumnValuesToBeInSet(column=spec.column, value_set=list(values or []), **common)
    if check == "between":
        return E.ExpectColumnValuesToBeBetween(column=spec.column, min_value=spec.min, max_value=spec.max, **common)
    if check == "not_future":
        return E.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="_period_end", column_B=spec.column, or_equal=True, ignore_row_if="either_value_is_missing",
            **common,
        )  # fmt: skip
    if check == "in_period":
        return E.ExpectColumnPairValuesToBeEqual(
            column_A=helper, column_B="_period_start", ignore_row_if="either_value_is_missing", **common
        )
    if check == "age_between":
        return E.ExpectColumnValuesToBeBetween(column=helper, min_value=spec.min, max_value=spec.max, **common)
    if check == "unique":
        if len(spec.columns) == 1:
            return E.ExpectColumnValuesToBeUnique(column=spec.columns[0], **common)
        return E.ExpectCompoundColumnsToBeUnique(column_list=list(spec.columns), **common)
    raise ValueError(f"no expectation for check {check}")  # pragma: no cover


class Validator:
    """A GX context for one ingest run; `validate` runs one source's suite, `build_docs` renders the Data Docs of
    every suite run (once: rebuilding the site after each source re-renders every earlier page).

    Sources may be validated from several threads at once: each source gets a Spark data source of its own (a
    data source's execution engine holds its current batch), and the context's stores are changed under a lock;
    only the checkpoint runs (the Spark jobs) overlap."""

    def __init__(self, docs_dir: str | Path | None) -> None:
        import great_expectations as gx

        self._gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False}
        self.docs_dir = Path(docs_dir) if docs_dir else None
        if self.docs_dir:
            self.context.add_data_docs_site(
                site_name=SITE,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        self._lock = threading.Lock()

    def validate(self, source: str, frame: DataFrame, rules: list[CompiledRule]) -> dict[str, ExpectationOutcome]:
        if not rules:
            return {}
        with self._lock:
            checkpoint = self._checkpoint(source, rules)
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        outcomes: dict[str, ExpectationOutcome] = {}
        for run in result.run_results.values():
            for item in run.results:
                name = item.expectation_config.meta["rule"]
                unexpected = item.result.get("unexpected_count") if item.result else None
                if unexpected is None and item.result and item.result.get("element_count") == 0:
                    unexpected = 0  # GX gives no count when no row is in the domain (e.g. no discharge dates)
                outcomes[name] = ExpectationOutcome(bool(item.success), unexpected)
                if _raised(item.exception_info):
                    log.warning("GX could not evaluate rule %s of %s", name, source)
        return outcomes

    def _checkpoint(self, source: str, rules: list[CompiledRule]):
        """The source's suite, validation definition and checkpoint, added to the context."""
        gx = self._gx
        # persist=False: GX would otherwise persist every frame it validates and never release it (the whole
        # landing batch of each source, held until the process ends); ours are staged Parquet, cheap to re-read.
        asset = self.context.data_sources.add_spark(f"landing_{source}", persist=False).add_dataframe_asset(source)
        batch = asset.add_batch_definition_whole_dataframe(f"{source}_batch")
        suite = self.context.suites.add(gx.ExpectationSuite(name=source))
        for rule in rules:
            suite.add_expectation(expectation_for(rule))
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=source, data=batch, suite=suite)
        )
        checkpoint = gx.Checkpoint(
            name=f"{source}_checkpoint", validation_definitions=[definition], actions=[], result_format=RESULT_FORMAT
        )
        return self.context.checkpoints.add(checkpoint)

    def build_docs(self) -> None:
        """The Data Docs site of every suite this run validated (its results are in the context's store)."""
        if self.docs_dir:
            self.context.build_data_docs(site_names=[SITE])


def _raised(info: object) -> bool:
    """GX reports exceptions either flat or per metric; true if any was raised."""
    if not isinstance(info, dict):
        return False
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(_raised(v) for v in info.values())
