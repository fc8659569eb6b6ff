"""Small helpers shared by the generator's activity modules: people's condition flags, their time in the
history window, and the events frame every activity adds to."""

from __future__ import annotations

import numpy as np
import pandas as pd

from phm.synthetic.dates import days
from phm.synthetic.population import PopulationPlan


def condition_flags(people: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(has the condition, has it diagnosed) per person; all False if the calibration lacks the condition."""
    if f"onset_{name}" not in people:
        return np.zeros(len(people), bool), np.zeros(len(people), bool)
    return people[f"onset_{name}"].notna().to_numpy(), people[f"diagnosed_{name}"].notna().to_numpy()


def diagnosed_on(people: pd.DataFrame, name: str) -> np.ndarray:
    """The diagnosis date per person (NaT if undiagnosed or the calibration lacks the condition)."""
    column = f"diagnosed_{name}"
    return days(people[column]) if column in people else np.full(len(people), np.datetime64("NaT"), "datetime64[D]")


def window_days(people: pd.DataFrame, plan: PopulationPlan) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) day of each person's time registered and alive in the history window."""
    start, ref = np.datetime64(plan.history_start, "D"), np.datetime64(plan.reference_date, "D")
    death = days(people["death_date"])
    return np.maximum(days(people["registered_on"]), start), np.where(np.isnat(death), ref, death)


def event_frame(kind: str, rows: np.ndarray, dates: np.ndarray, **columns: object) -> pd.DataFrame:
    """Events of one kind: the person's row in the block, the date and any columns (code, value ...)."""
    frame = pd.DataFrame({"row": rows, "kind": kind, "event_date": dates})
    for key, value in columns.items():
        frame[key] = value
    return frame
