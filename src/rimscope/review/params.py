"""Validation of every value a client sends, before anything else sees it.

Why one module: the API's safety rests on a few rules applied everywhere — ids are looked up in
the catalog (never used as paths), numbers are parsed from short strings into stated ranges,
choices come from fixed sets, and unknown parameters are refused rather than ignored — so they
are written once and tested once.
"""
from __future__ import annotations

import math
import re

from starlette.exceptions import HTTPException

SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RATER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,39}$")
INT_RE = re.compile(r"^[+-]?[0-9]{1,9}$")
FLOAT_RE = re.compile(r"^[+-]?([0-9]{1,6}(\.[0-9]{0,8})?|\.[0-9]{1,8})([eE][+-]?[0-9]{1,2})?$")
MAX_LESION_ID = 2**31 - 1
RESERVED_RATERS = {"model"}


def bad(detail: str, status: int = 400):
    raise HTTPException(status_code=status, detail=detail)


def only(params, allowed: set) -> None:
    """Refuse unknown and repeated parameters: a typo must not silently fall back to a default."""
    keys = [k for k, _ in params.multi_items()]
    unknown = sorted(set(keys) - allowed - {"token"})
    if unknown:
        bad(f"unknown parameter(s): {', '.join(u[:40] for u in unknown[:5])}")
    if len(keys) != len(set(keys)):
        bad("a parameter is given twice")


def as_int(value, name: str, lo: int, hi: int, json: bool = False) -> int:
    """An integer within [lo, hi]: from a short decimal string (query), or, with `json`, a JSON
    integer only (never a string, a float or a bool)."""
    if isinstance(value, bool) or (json and not isinstance(value, int)):
        bad(f"{name} must be an integer")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and INT_RE.match(value):
        n = int(value)
    else:
        bad(f"{name} must be an integer")
    if not lo <= n <= hi:
        bad(f"{name} must be in [{lo}, {hi}]")
    return n


def as_float(value, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool):
        bad(f"{name} must be a number")
    if isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str) and FLOAT_RE.match(value):
        x = float(value)
    else:
        bad(f"{name} must be a number")
    if not math.isfinite(x) or not lo <= x <= hi:
        bad(f"{name} must be a finite number in [{lo}, {hi}]")
    return x


def as_choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        bad(f"{name} must be one of {', '.join(sorted(choices))}")
    return value


def as_subject(value, catalog) -> str:
    """A subject id of the loaded cohort with predictions; anything else is refused."""
    if not isinstance(value, str) or not SUBJECT_RE.match(value):
        bad("subject must be a subject id of the cohort (letters, digits, _ . -)")
    if value not in catalog.lesions:
        bad("no such subject in this review", 404)
    return value


def as_lesion(subject: str, value, catalog, json: bool = False):
    """A (validated subject's) lesion id listed in its predictions."""
    lid = as_int(value, "lesion_id", 1, MAX_LESION_ID, json=json)
    pred = catalog.get(subject, lid)
    if pred is None:
        bad("no such lesion for this subject", 404)
    return pred


def as_rater(value) -> str:
    if not isinstance(value, str) or not RATER_RE.match(value) or value.lower() in RESERVED_RATERS:
        bad("rater must be 1-40 letters, digits or _ . @ - (and not 'model')")
    return value
