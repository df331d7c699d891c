"""`--option key=value` parsing shared by `rimscope train` and `rimscope pretrain`: values are
JSON where they parse (numbers, booleans, lists), strings otherwise; `model.key=value` goes to the
model's own options."""
from __future__ import annotations

import json

from ..errors import InputError


def parse_options(items) -> dict:
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--option {item!r} must look like key=value (e.g. epochs=20, model.film=false)")
        key, val = item.split("=", 1)
        try:
            val = json.loads(val)
        except json.JSONDecodeError:
            pass
        if key.startswith("model."):
            out.setdefault("model", {})[key[6:]] = val
        else:
            out[key] = val
    return out
