"""How each source records a person: identifiers as of the event date, at the source's own quality.

Definitions (calibration.yaml `identifiers`; FACTS.md "Linkage realities"):
- State at the event: surname after a change of name, postcode after a move
  (a source may keep the stale postcode instead).
- Per source, at configured rates: missing NHS number; a one-digit NHS
  number slip (often failing the check digit); forename nickname
  (Robert/Bob); name typos following the typo taxonomy (substitution 59%,
  deletion 16%, insertion 10%, transposition 2%, multiple 13%; first letter
  wrong in only 7.8%); date of birth errors (day/month swap or a near date);
  missing postcode.
- Per source, at configured rates, on a stream of their own (so adding them
  changed no other draw): forename and surname swapped between fields;
  OCR-like misreadings of letter shapes (rn/m, cl/d, vv/w, li/h, ri/n, I/l)
  where records are keyed from scanned forms.
Every change made to a record is listed in its `corruptions` column (truth only).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from phm.synthetic.calibration import IdentifierCalibration, SourceQuality
from phm.synthetic.dates import days
from phm.synthetic.names import NICKNAMES

LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
# Letter shapes a scanner misreads for one another (both directions); letters only, so a misread name is
# still a name a contract accepts.
OCR_CONFUSIONS = (("rn", "m"), ("cl", "d"), ("vv", "w"), ("li", "h"), ("ri", "n"), ("I", "l"))


def identity_at_events(people: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """The true identifiers of each event's person as of its date (after moves and name changes)."""
    columns = ["nhs_number", "forename", "surname", "new_surname", "date_of_birth", "sex", "postcode", "new_postcode",
               "moved_on", "surname_changed_on"]  # fmt: skip
    person = people[columns].iloc[events["row"].to_numpy()].reset_index(drop=True)
    when = pd.to_datetime(events["event_date"]).to_numpy()
    moved = pd.to_datetime(person["moved_on"]).to_numpy()
    renamed = pd.to_datetime(person["surname_changed_on"]).to_numpy()
    after_move = ~np.isnat(moved) & (when >= moved)
    after_rename = ~np.isnat(renamed) & (when >= renamed)
    return pd.DataFrame(
        {
            "nhs_number": person["nhs_number"].to_numpy(),
            "forename": person["forename"].to_numpy(),
            "surname": np.where(after_rename, person["new_surname"].to_numpy(), person["surname"].to_numpy()),
            "date_of_birth": days(person["date_of_birth"]),
            "sex": person["sex"].to_numpy(),
            "postcode": np.where(after_move, person["new_postcode"].to_numpy(), person["postcode"].to_numpy()),
            "old_postcode": np.where(after_move, person["postcode"].to_numpy(), None),
        }
    )


def apply_source_quality(
    identity: pd.DataFrame, quality: SourceQuality, rules: IdentifierCalibration, rng: np.random.Generator
) -> pd.DataFrame:
    """A source's view of each identity: returns the corrupted columns plus `corruptions` (';'-joined)."""
    n = len(identity)
    out = identity.copy()
    notes: list[tuple[np.ndarray, str]] = []

    def note(mask: np.ndarray, label: str) -> None:
        notes.append((mask, label))

    # Postcode: the old address kept after a move, or none at all.
    stale = (rng.random(n) < quality.stale_postcode) & out["old_postcode"].notna().to_numpy()
    out.loc[stale, "postcode"] = out.loc[stale, "old_postcode"]
    note(stale, "stale_postcode")
    no_postcode = (rng.random(n) < quality.stale_postcode / 4) & ~stale
    out.loc[no_postcode, "postcode"] = None
    note(no_postcode, "missing_postcode")

    # NHS number: missing, or one digit slipped (which usually breaks the check digit).
    missing = rng.random(n) < quality.nhs_number_missing
    slip_rate = rules.invalid_nhs_number_rate if quality.nhs_number_slip is None else quality.nhs_number_slip
    slipped = (rng.random(n) < slip_rate) & ~missing
    numbers = out["nhs_number"].to_numpy().astype(object)
    for i in np.flatnonzero(slipped):
        position = rng.integers(3, 10)
        digit = str((int(numbers[i][position]) + rng.integers(1, 10)) % 10)
        numbers[i] = numbers[i][:position] + digit + numbers[i][position + 1 :]
    numbers[missing] = None
    out["nhs_number"] = numbers
    note(missing, "missing_nhs_number")
    note(slipped, "nhs_number_slip")

    # Forenames: nicknames where one exists, then typos in either name.
    forenames = out["forename"].to_numpy().astype(object)
    nick = rng.random(n) < quality.nickname
    has_nick = np.array([f in NICKNAMES for f in forenames])
    forenames[nick & has_nick] = [NICKNAMES[f] for f in forenames[nick & has_nick]]
    note(nick & has_nick, "nickname")
    for column, label in (("forename", "forename_typo"), ("surname", "surname_typo")):
        values = forenames if column == "forename" else out["surname"].to_numpy().astype(object)
        typo = rng.random(n) < quality.name_typo
        for i in np.flatnonzero(typo):
            values[i] = typo_of(values[i], rules, rng)
        out[column] = values
        note(typo, label)

    # Date of birth: day and month swapped (when both are <= 12), else a near date.
    dob = out["date_of_birth"].to_numpy().astype("datetime64[D]")
    wrong = rng.random(n) < quality.dob_error
    swap = wrong & (rng.random(n) < rules.dob_day_month_swap_share)
    days = pd.DatetimeIndex(dob)
    swappable = swap & (days.day <= 12) & (days.day != days.month)
    swapped = (
        pd.to_datetime({"year": days.year[swappable], "month": days.day[swappable], "day": days.month[swappable]})
        .to_numpy()
        .astype("datetime64[D]")
        if swappable.any()
        else np.array([], "datetime64[D]")
    )
    dob[swappable] = swapped
    near = wrong & ~swappable
    dob[near] = dob[near] + rng.choice([-31, -1, 1, 10, 365, -365], near.sum()).astype("timedelta64[D]")
    out["date_of_birth"] = dob
    note(swappable, "dob_day_month_swap")
    note(near, "dob_near_date")

    out["corruptions"] = with_labels(np.full(n, None, dtype=object), notes)
    return out.drop(columns=["old_postcode"])


def apply_name_errors(seen: pd.DataFrame, quality: SourceQuality, rng: np.random.Generator) -> pd.DataFrame:
    """Names swapped between fields and OCR-like misreadings, added to a source's view of each identity
    (apply_source_quality's output); `corruptions` gains `name_swap`, `forename_ocr`, `surname_ocr`."""
    if quality.name_swap == 0 and quality.ocr_error == 0:
        return seen
    n = len(seen)
    out = seen.copy()
    notes: list[tuple[np.ndarray, str]] = []
    forenames = out["forename"].to_numpy().astype(object)
    surnames = out["surname"].to_numpy().astype(object)
    swap = rng.random(n) < quality.name_swap
    forenames[swap], surnames[swap] = surnames[swap], forenames[swap]  # fancy indexing copies
    notes.append((swap, "name_swap"))
    for values, label in ((forenames, "forename_ocr"), (surnames, "surname_ocr")):
        misread = rng.random(n) < quality.ocr_error
        for i in np.flatnonzero(misread):
            changed = ocr_misreading(values[i], rng)
            if changed == values[i]:
                misread[i] = False
            values[i] = changed
        notes.append((misread, label))
    out["forename"] = forenames
    out["surname"] = surnames
    out["corruptions"] = with_labels(out["corruptions"].to_numpy(), notes)
    return out


def with_labels(notes: np.ndarray, labelled: list[tuple[np.ndarray, str]]) -> np.ndarray:
    """Each row's notes (';'-joined labels, or None) with the label of every mask set on the row appended, in
    the order given; by array operations over the rows each mask sets, not a Python list per row."""
    out = notes.astype(object)  # a copy
    for mask, label in labelled:
        rows = np.flatnonzero(np.asarray(mask))
        current = out[rows]
        noted = np.array([isinstance(note, str) for note in current], dtype=bool)
        out[rows[~noted]] = label
        out[rows[noted]] = current[noted] + f";{label}"
    return out


def ocr_misreading(name: str, rng: np.random.Generator) -> str:
    """The name with one letter shape misread, at a random place where a confusion applies (unchanged if none)."""
    if not isinstance(name, str):
        return name
    options = [
        (start, found, replacement)
        for pair in OCR_CONFUSIONS
        for found, replacement in (pair, pair[::-1])
        for start in _occurrences(name, found)
    ]
    if not options:
        return name
    start, found, replacement = options[rng.integers(len(options))]
    return name[:start] + replacement + name[start + len(found) :]


def _occurrences(text: str, part: str) -> list[int]:
    return [i for i in range(len(text) - len(part) + 1) if text.startswith(part, i)]


def typo_of(name: str, rules: IdentifierCalibration, rng: np.random.Generator) -> str:
    """One misspelling of a name, of a kind drawn from the typo taxonomy."""
    if len(name) < 2:
        return name
    kinds = list(rules.typo_kinds)
    weights = np.array([rules.typo_kinds[k] for k in kinds])
    single = [k for k in kinds if k != "multiple"]
    for _ in range(10):  # a second error can undo the first: draw again until the name differs
        kind = kinds[rng.choice(len(kinds), p=weights)]
        if kind == "multiple":
            typo = _one_typo(_one_typo(name, "substitution", rules, rng), str(rng.choice(single)), rules, rng)
        else:
            typo = _one_typo(name, kind, rules, rng)
        if typo != name:
            return typo
    return typo


def _one_typo(name: str, kind: str, rules: IdentifierCalibration, rng: np.random.Generator) -> str:
    first = rng.random() < rules.typo_first_letter
    position = 0 if first else int(rng.integers(1, len(name)))
    letter = str(rng.choice(LETTERS))
    letter = letter.upper() if position == 0 else letter
    if kind == "deletion":
        return name[:position] + name[position + 1 :]
    if kind == "insertion":
        return name[:position] + letter + name[position:]
    if kind == "transposition" and position < len(name) - 1:
        swapped = name[position + 1] + name[position]
        if position == 0:
            swapped = swapped.capitalize()
        return name[:position] + swapped + name[position + 2 :]
    if name[position].lower() == letter.lower():
        letter = "e" if letter.lower() != "e" else "a"
    return name[:position] + letter + name[position + 1 :]
