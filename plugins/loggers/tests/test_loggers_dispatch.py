"""Through core's dispatch: a logger (or log_metrics hook) that raises does not stop the others."""

from __future__ import annotations

import json
import types
import warnings

import attrs

from polx import hookimpl
from polx.logdispatch import close_loggers, log, open_loggers
from polx.plugins import load_plugins
from polx.jsonlog import JsonLogConfig
from polx_loggers.config import SwanLabConfig, WandbConfig


@attrs.define(frozen=True, kw_only=True)
class _Cfg:
    pass


class _Exploding:
    def log(self, step, metrics, images):
        raise ConnectionError("quota exceeded")

    def close(self):
        pass


class FailingPlugin:
    """A test plugin with a logger that raises on every record and a hook that raises too."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    def register_components(self, register):
        register("logger", "exploding", _Cfg, lambda config, run: _Exploding(), help="raises")
        register("logger", "unstartable", _Cfg, "polx_no_such_module:factory", help="fails to open")

    @hookimpl
    def log_metrics(self, run, step, metrics, images):
        self.calls += 1
        raise RuntimeError("sink down")


def test_failing_logger_and_hook_do_not_stop_json_swanlab_wandb(run, make_png):
    failing = FailingPlugin()
    plugins = load_plugins(extra=[("failing", failing)])
    names = ("exploding", "unstartable", "json", "swanlab", "wandb")
    config = types.SimpleNamespace(
        components=types.SimpleNamespace(loggers=names),
        loggers={
            "json": JsonLogConfig(),
            "swanlab": SwanLabConfig(mode="offline"),
            "wandb": WandbConfig(mode="offline"),
            "exploding": _Cfg(),
            "unstartable": _Cfg(),
        },
    )
    image = make_png()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_loggers(plugins, run, config)
        for step in range(4):
            log(plugins, run, step, {"global_step": step, "train_loss": 1.0 / (step + 1)}, {"rollout": str(image)})
        close_loggers(run)
    messages = [str(w.message) for w in caught]

    assert sum("'unstartable' could not start" in m for m in messages) == 1
    assert sum("logger 'exploding' failed" in m and "quota exceeded" in m for m in messages) == 1  # once, then skipped
    assert sum("'failing' failed" in m and "sink down" in m for m in messages) == 1
    assert failing.calls == 1 and run.failed_loggers == {"exploding"}

    lines = [json.loads(line) for line in (run.dir / "logs.json.txt").read_text().splitlines()]
    assert [r["train_loss"] for r in lines] == [1.0, 0.5, 1.0 / 3, 0.25]
    assert list((run.dir / "swanlab").glob("run-*/media/**/*.png"))  # the trackers kept logging, images included
    assert list((run.dir / "wandb").glob("offline-run-*/files/media/images/*.png"))
