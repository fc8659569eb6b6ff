"""Statistical disclosure control for every mart meant for publication.

Policy (configured in `disclosure`, defaults from the NHS England / ONS practice for published health
statistics that the issue sets): a count from 1 to `max_suppressed` (7) is suppressed, every other count is
rounded to the nearest `rounding_base` (5); zero is published. Any rate, interval or value that rests on a
suppressed count is suppressed with it (rates are computed from the unrounded counts first). Secondary
suppression: within a set of cells that adds up to a published total (the groups of one breakdown; the
areas of one tier), a single suppressed cell could be recovered by subtraction, so the smallest other
non-zero cell of the set is suppressed too, over every grouping given until none has a lone suppressed cell.

Tables are small by the time they are published (aggregates), so this works on pandas frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

PRIMARY, SECONDARY = "primary", "secondary"


def round_to(values: pd.Series, base: int) -> pd.Series:
    """Rounded half up to the nearest `base` (so 2.5 x base goes up, as the published convention has it)."""
    return (np.floor(values.astype(float) / base + 0.5) * base).astype("Int64")


def primary_suppressed(counts: pd.Series, max_suppressed: int) -> pd.Series:
    return counts.notna() & (counts >= 1) & (counts <= max_suppressed)


def secondary_suppressed(frame: pd.DataFrame, suppressed: pd.Series, count: str, groups: Sequence[str]) -> pd.Series:
    """Cells to suppress so that no set (rows sharing `groups`) has exactly one suppressed cell: the smallest
    other non-zero, unsuppressed cell of such a set, repeated until none is left alone."""
    suppressed = suppressed.copy()
    more = pd.Series(False, index=frame.index)
    keys = list(groups)
    while True:
        # Sets are disjoint, so one pass settles each set with a lone suppressed cell; a pass is vectorised
        # (the population profile's ~3,000 cells in ~300 sets: a loop over sets took ~9 s of each profile run).
        per_set = suppressed.groupby([frame[k] for k in keys], dropna=False, sort=False).transform("sum")
        open_cells = frame.loc[(per_set == 1) & ~suppressed & (frame[count] > 0)]
        if open_cells.empty:
            return more
        smallest = open_cells.groupby(keys, dropna=False, sort=False)[count].idxmin()
        suppressed.loc[smallest.to_numpy()] = True
        more.loc[smallest.to_numpy()] = True


def disclosure_control(
    frame: pd.DataFrame,
    counts: Sequence[str],
    dependent: Sequence[str],
    sets: Sequence[str] | Sequence[Sequence[str]],
    max_suppressed: int = 7,
    rounding_base: int = 5,
) -> pd.DataFrame:
    """`frame` made safe to publish: each count column in `counts` suppressed (null) or rounded; every column
    in `dependent` (rates, intervals, values) nulled on a row where any count was suppressed; secondary
    suppression within the rows sharing `sets` (column names), or within each of several such groupings (a
    list of them: the groups of an area, and the areas of a tier), repeated until every grouping is safe; a
    `suppressed` column says which rule applied (null: none)."""
    result = frame.copy()
    first = pd.Series(False, index=frame.index)
    for column in counts:
        first |= primary_suppressed(frame[column], max_suppressed)
    groupings = [] if not sets else [tuple(sets)] if isinstance(sets[0], str) else [tuple(g) for g in sets]
    second = pd.Series(False, index=frame.index)
    changed = bool(groupings)
    while changed:
        changed = False
        for grouping in groupings:
            for column in counts:
                more = secondary_suppressed(frame, first | second, column, grouping)
                if (more & ~second).any():
                    second |= more
                    changed = True
    hidden = first | second
    for column in counts:
        result[column] = round_to(frame[column], rounding_base).mask(hidden)
    for column in dependent:
        result[column] = frame[column].astype(float).mask(hidden)
    result["suppressed"] = np.where(first, PRIMARY, np.where(second, SECONDARY, None))
    return result


def disclosure_control_in_parts(
    frame: pd.DataFrame,
    parts: Sequence[tuple[Sequence[str], Sequence[str]]],
    sets: Sequence[str] | Sequence[Sequence[str]],
    max_suppressed: int = 7,
    rounding_base: int = 5,
) -> pd.DataFrame:
    """disclosure_control for a row that publishes several independent counts: `parts` is a list of (counts,
    dependent) pairs, the first being the row's people. A hidden first part hides the whole row; a later
    part hidden (few admissions, say) hides only its own columns, and `suppressed` names it ("primary:
    emergency_admissions_12m")."""
    (first_counts, first_dependent), *others = parts
    published = disclosure_control(frame, first_counts, first_dependent, sets, max_suppressed, rounding_base)
    row_hidden = published["suppressed"].notna()
    for counts, dependent in others:
        controlled = disclosure_control(frame, counts, dependent, sets, max_suppressed, rounding_base)
        for column in (*counts, *dependent):
            published[column] = controlled[column].mask(row_hidden)
        label = controlled["suppressed"].map(lambda rule, name=counts[0]: f"{rule}: {name}", na_action="ignore")
        published["suppressed"] = published["suppressed"].where(row_hidden | published["suppressed"].notna(), label)
    return published
