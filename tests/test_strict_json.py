"""Strict JSON wherever a figure is written: a non-finite number is ``null``, flagged and warned
about, never ``Infinity`` or ``NaN`` (which strict readers refuse)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polx.jsonlog import LOG_NAME, JsonLogger
from polx.plot import metric_series, read_log
from polx.strictjson import NON_FINITE_KEY, dumps_flagged


def strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


names = st.text("abcdefgh_", min_size=1, max_size=6)
figures = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**6, 10**6) | st.none() | st.text(max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(names, figures | st.dictionaries(names, figures, max_size=3) | st.lists(figures, max_size=3), max_size=5))
def test_what_is_written_is_strict_json_with_exactly_the_non_finite_paths_flagged(data):
    with pytest.warns(RuntimeWarning) if _has_non_finite(data) else _no_warning():
        text = dumps_flagged(data, what="summary.json")
    back = strict_loads(text)
    flagged = back.pop(NON_FINITE_KEY, [])
    assert sorted(flagged) == sorted(_non_finite_paths(data))
    for key, value in data.items():  # finite values round-trip exactly; the others are null
        _same(value, back[key])


def test_the_json_log_writes_null_for_a_diverged_metric_and_says_so(tmp_path):
    log = JsonLogger(tmp_path / LOG_NAME)
    with pytest.warns(RuntimeWarning, match=r"val_action_mse"):
        log.log(3, {"train_loss": 0.5, "val_action_mse": float("inf")})
    log.log(4, {"train_loss": 0.25, "val_action_mse": float("nan")})  # warned once per key
    log.close()
    records = [strict_loads(line) for line in (tmp_path / LOG_NAME).read_text().splitlines()]
    assert [r["val_action_mse"] for r in records] == [None, None]
    series = metric_series(read_log(tmp_path / LOG_NAME))  # readers skip the nulls
    assert "val_action_mse" not in series and series["train_loss"] == ([3, 4], [0.5, 0.25])


def _non_finite_paths(obj, path=""):
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _non_finite_paths(v, f"{path}.{k}" if path else k)]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _non_finite_paths(v, f"{path}[{i}]")]
    return [path] if isinstance(obj, float) and not math.isfinite(obj) else []


def _has_non_finite(obj):
    return bool(_non_finite_paths(obj))


def _same(before, after):
    if isinstance(before, dict):
        for k in before:
            _same(before[k], after[k])
    elif isinstance(before, list):
        for a, b in zip(before, after, strict=True):
            _same(a, b)
    elif isinstance(before, float) and not math.isfinite(before):
        assert after is None
    else:
        assert after == before


class _no_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
