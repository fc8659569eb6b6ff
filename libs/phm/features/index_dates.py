"""Which index dates the risk models train, validate and score on, and which feature windows fit the history.

The scoring date is the day after the reference date (the end of the latest
loaded period). Validation is the latest date at least one follow-up earlier
(so its outcome is fully observed) on a grid of `index_dates_every_months`
months counted from the earliest validation date the history allows
(`min_history_months` and one follow-up after its start): the training and
validation dates stay put from one monthly refresh to the next and move one
step at a time, as the models are retrained (1: they move every month,
validation exactly one follow-up before scoring). Between steps a refresh keeps
their rows of gold.features as they were built and builds the scoring date's
only (`risk.keep_earlier_index_dates`; jobs/features.py). Training
dates step back one follow-up at a time, so a training outcome ends no later
than the validation date and nothing a model learns from is later than the
data it is validated on. A training date needs `min_history_months` of data
before it; a feature window longer than the history before the earliest
training date is dropped (its counts would mean less at training than at
scoring).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from dateutil.relativedelta import relativedelta
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from phm.config import RiskConfig
from phm.errors import UserError

TRAIN, VALIDATION, SCORE = "train", "validation", "score"


@dataclass(frozen=True)
class IndexPlan:
    training: tuple[date, ...]
    validation: date
    scoring: date
    windows: tuple[int, ...]
    dropped_windows: tuple[int, ...]
    history_start: date
    follow_up_months: int

    @property
    def dates(self) -> list[tuple[date, str]]:
        """(index date, split), earliest first."""
        return [(d, TRAIN) for d in sorted(self.training)] + [(self.validation, VALIDATION), (self.scoring, SCORE)]


def validation_date(features: DataFrame) -> date:
    """The validation index date of a gold.features frame."""
    return features.where(F.col("split") == VALIDATION).agg(F.max("index_date")).first()[0]


def months_between(start: date, end: date) -> int:
    """Whole months from `start` to `end` (negative if `end` is earlier)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - (1 if end.day < start.day else 0)


def plan_index_dates(reference_date: date, history_start: date, risk: RiskConfig) -> IndexPlan:
    """The index dates for data from `history_start` to `reference_date`; a UserError if the history is too short."""
    scoring = reference_date + timedelta(days=1)
    follow_up = relativedelta(months=risk.follow_up_months)
    earliest = history_start + relativedelta(months=risk.min_history_months) + follow_up
    if earliest + follow_up > scoring:
        needed = 2 * risk.follow_up_months + risk.min_history_months
        raise UserError(
            f"features: {months_between(history_start, scoring)} months of history ({history_start} to "
            f"{reference_date}) is too short for risk models: training needs {needed} (risk.follow_up_months x 2 "
            "+ risk.min_history_months); load more history or shorten risk.follow_up_months"
        )
    step = risk.index_dates_every_months
    validation = earliest + relativedelta(months=months_between(earliest, scoring - follow_up) // step * step)
    training = tuple(
        d
        for d in (
            validation - relativedelta(months=k * risk.follow_up_months)
            for k in range(1, 1 + risk.training_index_dates)
        )
        if months_between(history_start, d) >= risk.min_history_months
    )
    available = months_between(history_start, min(training))
    windows = tuple(w for w in risk.lookback_months if w <= available)
    if not windows:
        raise UserError(
            f"features: every window in risk.lookback_months {risk.lookback_months} is longer than the "
            f"{available} months of history before the first training date {min(training)}; add a shorter one"
        )
    dropped = tuple(w for w in risk.lookback_months if w > available)
    return IndexPlan(training, validation, scoring, windows, dropped, history_start, risk.follow_up_months)
