"""The JSON log (core's own logger): one object of numbers per line, flushed per line, resumable after a crash."""

from __future__ import annotations

import json
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.components import Run
from polx.config import resolve_config
from polx.errors import ConfigError
from polx.jsonlog import LOG_NAME, JsonLogConfig, JsonLogger, drop_partial_last_line, open_json_log
from polx.logdispatch import close_loggers, open_loggers
from polx.plugins import CORE_PLUGIN_NAME, load_plugins


@pytest.fixture
def run(tmp_path) -> Run:
    return Run(dir=tmp_path / "runs" / "12-00-00_head_env", name="12-00-00_head_env", config={})


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_read_back_with_counters_as_integers(run, tmp_path):
    logger = open_json_log(JsonLogConfig(), run)
    logger.log(50, {"train_loss": 0.25, "lr": 1e-4, "global_step": 50.0, "epoch": 1.0}, {})
    logger.log(60, {"train_loss": 0.125}, {"traj": str(tmp_path / "traj.png")})  # no global_step: taken from step
    path = run.dir / "logs.json.txt"
    # flushed per line: readable while the logger is still open
    assert read_lines(path) == [
        {"train_loss": 0.25, "lr": 1e-4, "global_step": 50, "epoch": 1},
        {"global_step": 60, "train_loss": 0.125},
    ]
    assert isinstance(read_lines(path)[0]["global_step"], int)
    logger.close()
    assert "traj" not in path.read_text()  # images are not written to the JSON log


def test_non_number_is_refused_by_name(tmp_path):
    logger = JsonLogger(tmp_path / "log.txt")
    with pytest.raises(TypeError, match="'phase' is not a number"):
        logger.log(1, {"phase": "train"}, {})
    logger.close()


def test_the_log_has_one_name_and_core_owns_it():
    """plot, sweeps and resumes read LOG_NAME, so no option may rename the file."""
    assert LOG_NAME == "logs.json.txt"
    assert [f.name for f in JsonLogConfig.__attrs_attrs__] == ["enabled"]
    with pytest.raises(ConfigError, match=r"loggers\.json\.filename: unknown key"):
        resolve_config(load_plugins(), head="imf_attnres", env="pusht", loggers=("json",), overrides=["loggers.json.filename=a.txt"])
    plugins = load_plugins(entry_points=[])  # no plugin at all: the JSON log is still there
    assert plugins.registry.names("logger") == ["json"]
    assert plugins.registry.owner("logger", "json") == CORE_PLUGIN_NAME


def test_enabled_false_is_not_opened(run):
    plugins = load_plugins()
    config = types.SimpleNamespace(
        components=types.SimpleNamespace(loggers=("json",)), loggers={"json": JsonLogConfig(enabled=False)}
    )
    open_loggers(plugins, run, config)
    assert run.loggers == {} and not (run.dir / "logs.json.txt").exists()
    config.loggers["json"] = JsonLogConfig()
    open_loggers(plugins, run, config)
    assert list(run.loggers) == ["json"]
    close_loggers(run)


record = st.dictionaries(
    st.sampled_from(["train_loss", "lr", "val_loss", "test_mean_score"]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    min_size=1,
)


@settings(max_examples=60, deadline=None)
@given(before=st.lists(record, min_size=0, max_size=6), after=st.lists(record, min_size=1, max_size=3), cut=st.floats(0, 1))
def test_resume_after_a_crash_leaves_no_broken_line(tmp_path_factory, before, after, cut):
    path = tmp_path_factory.mktemp("resume") / "logs.json.txt"
    logger = JsonLogger(path)
    for step, metrics in enumerate(before):
        logger.log(step, metrics, {})
    logger.close()
    data = path.read_bytes()
    cut_at = int(cut * len(data))
    path.write_bytes(data[:cut_at])  # the crash: the file ends anywhere, mid-line included
    complete = data[:cut_at].count(b"\n")

    logger = JsonLogger(path)  # resume
    for i, metrics in enumerate(after):
        logger.log(100 + i, metrics, {})
    logger.close()

    text = path.read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]  # every line parses
    assert len(lines) == complete + len(after)
    assert [r["global_step"] for r in lines] == list(range(complete)) + [100 + i for i in range(len(after))]


def test_drop_partial_last_line_reads_across_chunks(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b'{"a": 1}\n' + b"x" * 100)  # the partial tail is longer than a chunk
    assert drop_partial_last_line(path, chunk=8) == 100
    assert path.read_bytes() == b'{"a": 1}\n'
    path.write_bytes(b"no newline at all")
    drop_partial_last_line(path, chunk=4)
    assert path.read_bytes() == b""
