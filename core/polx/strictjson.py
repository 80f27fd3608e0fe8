"""Strict JSON for every figure polx writes: a non-finite number becomes ``null`` and is flagged.

Python's ``json`` writes ``Infinity`` and ``NaN`` by default, which no strict JSON reader accepts
(``jq``, browsers, most languages). A diverged metric must still leave a readable file, and the
reader must learn that a value was not finite rather than find it silently missing, so
``dumps_flagged`` lists the dotted paths it nulled under ``"non_finite"`` and warns once.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from typing import Any

#: the key under which ``dumps_flagged`` lists the paths of the values it wrote as null
NON_FINITE_KEY = "non_finite"


def finite_or_null(obj: Any, path: str = "") -> tuple[Any, list[str]]:
    """``obj`` with every non-finite real number replaced by None, and the dotted paths replaced."""
    if isinstance(obj, dict):
        out, bad = {}, []
        for key, value in obj.items():
            out[key], sub = finite_or_null(value, f"{path}.{key}" if path else str(key))
            bad += sub
        return out, bad
    if isinstance(obj, (list, tuple)):
        out_list, bad = [], []
        for i, value in enumerate(obj):
            item, sub = finite_or_null(value, f"{path}[{i}]")
            out_list.append(item)
            bad += sub
        return out_list, bad
    if isinstance(obj, numbers.Real) and not isinstance(obj, (bool, numbers.Integral)):
        number = float(obj)
        return (number, []) if math.isfinite(number) else (None, [path or "value"])
    if isinstance(obj, numbers.Integral) and not isinstance(obj, bool):
        return int(obj), []
    return obj, []


def dumps_flagged(obj: Any, *, what: str = "", **kwargs: Any) -> str:
    """Strict JSON text of ``obj``; non-finite numbers are ``null``, listed under ``"non_finite"``
    when ``obj`` is a mapping, and named in one warning (``what`` says which file)."""
    clean, bad = finite_or_null(obj)
    if bad:
        if isinstance(clean, dict):
            clean[NON_FINITE_KEY] = bad
        where = f" in {what}" if what else ""
        warnings.warn(f"not finite, written as null{where}: {', '.join(bad)}", RuntimeWarning, stacklevel=2)
    return json.dumps(clean, allow_nan=False, **kwargs)
