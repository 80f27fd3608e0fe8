"""The hook machinery: core's registry-backed fallbacks, plugin overrides, and logger isolation.

Components here are plain Python objects: what is under test is the dispatch, not a network.
"""

from __future__ import annotations

import types
import warnings

import pytest
from attrs import define

from polx import hookimpl
from polx.components import Episode, ObsActionSpec, Run
from polx.logdispatch import close_loggers, log, open_loggers
from polx.plugins import load_plugins


@define(frozen=True, kw_only=True)
class Empty:
    pass


@define(frozen=True, kw_only=True)
class SinkCfg:
    enabled: bool = True


class EchoObjective:
    name = "echo"
    default_num_steps = 1

    def __init__(self, config):
        self.config = config

    def compute_loss(self, head, batch):
        return sum(batch["action"]), {"n": len(batch["action"])}

    def sample(self, head, cond, num_steps, generator):
        return ("sampled", head, cond, num_steps or self.default_num_steps)


class ListSink:
    records: list = []

    def __init__(self, config, run):
        self.run = run

    def log(self, step, metrics, images):
        ListSink.records.append((step, dict(metrics), dict(images)))

    def close(self):
        ListSink.records.append("closed")


class RaisingSink(ListSink):
    calls = 0

    def log(self, step, metrics, images):
        RaisingSink.calls += 1
        raise ConnectionError("tracker unreachable")


def _provider() -> types.ModuleType:
    mod = types.ModuleType("provider")

    @hookimpl
    def register_components(register):
        register("head", "pair", Empty, lambda config, spec: ("head", spec), default_objective="echo")
        register("objective", "echo", Empty, EchoObjective)
        register("logger", "list", SinkCfg, ListSink)
        register("logger", "raising", SinkCfg, RaisingSink)

    @hookimpl
    def render_trajectory(env, episode, path):
        return path if env == "mine" else None

    mod.register_components, mod.render_trajectory = register_components, render_trajectory
    return mod


def _overrider() -> types.ModuleType:
    mod = types.ModuleType("overrider")

    @hookimpl
    def build_head(name, config, spec):
        return ("wrapped", name) if name == "pair" else None

    @hookimpl
    def compute_loss(objective, head, batch):
        return None  # declines: the fallback must still answer

    mod.build_head, mod.compute_loss = build_head, compute_loss
    return mod


SPEC = ObsActionSpec(action_dim=2, horizon=4, n_obs_steps=1, cond_dim=3)


def test_register_components_hook_fills_the_registry_with_each_components_extras():
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider())])
    head = plugins.registry.get("head", "pair")
    assert (head.plugin, head.default_objective, head.config_cls) == ("provider", "echo", Empty)
    assert plugins.registry.names("logger") == ["json", "list", "raising"]  # json: core's own
    assert plugins.info("provider").components == {"head": ["pair"], "logger": ["list", "raising"], "objective": ["echo"]}


def test_build_head_hook_falls_back_to_the_registered_factory_and_a_plugin_wins():
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider())])
    assert plugins.hook.build_head(name="pair", config=Empty(), spec=SPEC) == ("head", SPEC)
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider()), ("overrider", _overrider())])
    assert plugins.hook.build_head(name="pair", config=Empty(), spec=SPEC) == ("wrapped", "pair")


def test_compute_loss_hook_falls_back_to_the_objective_when_a_plugin_declines():
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider())])
    objective = plugins.registry.get("objective", "echo").build(Empty())
    assert plugins.hook.compute_loss(objective=objective, head=None, batch={"action": [1, 2, 3]}) == (6, {"n": 3})
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider()), ("overrider", _overrider())])
    assert plugins.hook.compute_loss(objective=objective, head=None, batch={"action": [2]}) == (2, {"n": 1})


def test_sample_hook_falls_back_to_the_objective_with_its_default_steps():
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider())])
    objective = plugins.registry.get("objective", "echo").build(Empty())
    assert plugins.hook.sample(objective=objective, head="h", cond="c", num_steps=None, generator=None) == ("sampled", "h", "c", 1)
    assert plugins.hook.sample(objective=objective, head="h", cond="c", num_steps=4, generator=None) == ("sampled", "h", "c", 4)


def test_render_trajectory_hook_is_answered_by_the_owner_only(tmp_path):
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider())])
    episode = Episode(seed=0, actions=[], rewards=[])
    assert plugins.hook.render_trajectory(env="mine", episode=episode, path="p.png") == "p.png"
    assert plugins.hook.render_trajectory(env="other", episode=episode, path="p.png") is None


def _run_with(plugins, names, tmp_path, config_overrides=None):
    run = Run(dir=tmp_path, name="t", config={})
    cfgs = {n: SinkCfg() for n in names}
    cfgs.update(config_overrides or {})
    config = types.SimpleNamespace(components=types.SimpleNamespace(loggers=tuple(names)), loggers=cfgs)
    open_loggers(plugins, run, config)
    return run


def test_log_metrics_hook_isolates_a_failing_logger(tmp_path):
    ListSink.records, RaisingSink.calls = [], 0
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider())])
    run = _run_with(plugins, ["raising", "list"], tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            log(plugins, run, step, {"train_loss": 1.0 / (step + 1)})
    assert RaisingSink.calls == 1  # warned once, then skipped
    assert [r[0] for r in ListSink.records] == [0, 1, 2]
    assert sum("raising" in str(w.message) for w in caught) == 1
    close_loggers(run)
    assert ListSink.records[-1] == "closed"


def test_a_failing_log_metrics_hookimpl_is_skipped(tmp_path):
    ListSink.records = []
    bad = types.ModuleType("bad")
    bad.calls = 0

    @hookimpl
    def log_metrics(run, step, metrics, images):
        bad.calls += 1
        raise RuntimeError("sink down")

    bad.log_metrics = log_metrics
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider()), ("bad", bad)])
    run = _run_with(plugins, ["list"], tmp_path)
    with pytest.warns(UserWarning, match="'bad' failed"):
        log(plugins, run, 0, {"a": 1.0})
    log(plugins, run, 1, {"a": 2.0})
    assert bad.calls == 1 and len(ListSink.records) == 2


def test_disabled_logger_is_not_opened(tmp_path):
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider())])
    run = _run_with(plugins, ["list"], tmp_path, {"list": SinkCfg(enabled=False)})
    assert run.loggers == {}


def test_videos_and_non_numbers_are_dropped_with_one_warning(tmp_path):
    np = pytest.importorskip("numpy")
    ListSink.records = []
    plugins = load_plugins(entry_points=[], extra=[("provider", _provider())])
    run = _run_with(plugins, ["list"], tmp_path)
    frames = np.zeros((10, 3, 8, 8), dtype=np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(2):
            log(plugins, run, step, {"loss": np.float32(0.5), "rollout_video": frames, "ok": True},
                {"traj": str(tmp_path / "a.png"), "clip": str(tmp_path / "a.mp4")})
    step, metrics, images = ListSink.records[-1]
    assert metrics == {"loss": 0.5, "ok": 1.0} and images == {"traj": str(tmp_path / "a.png")}
    video_warnings = [w for w in caught if "video" in str(w.message)]
    assert len(video_warnings) == 2  # one for the metric, one for the image, not repeated per step
