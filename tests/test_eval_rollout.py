"""Rollouts and their metrics: paper definitions, independence from the number of env processes,
trajectory PNGs, and ``evaluate_checkpoint``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch

import toy_plugin  # noqa: E402

from polx.components import Episode  # noqa: E402
from polx.config import resolve_config  # noqa: E402
from polx.data.normalizer import Normalizer  # noqa: E402
from polx.errors import UserInputError  # noqa: E402
from polx.eval.evaluate import evaluate_checkpoint  # noqa: E402
from polx.eval.metrics import summarize  # noqa: E402
from polx.eval.rollout import load_recipe, plugin_recipe, run_rollouts  # noqa: E402
from polx.policy.policy import build_policy  # noqa: E402
from polx.base.checkpoint import LATEST  # noqa: E402


def _episode(seed: int, rewards, success=None) -> Episode:
    infos = [{} if success is None else {"is_success": s} for s in success or [None] * len(rewards)]
    return Episode(seed=seed, actions=np.zeros((len(rewards), 2)), rewards=np.asarray(rewards, float), infos=infos)


def test_metrics_follow_diffusion_policy_definitions() -> None:
    test = [_episode(100, [0.1, 0.9, 0.3], [False, True, False]), _episode(101, [0.2, 0.4], [False, False])]
    m = summarize("test", test)
    assert m["test_mean_score"] == pytest.approx((0.9 + 0.4) / 2)  # mean over episodes of the max reward
    assert m["test_success_rate"] == 0.5
    assert m["test/sim_max_reward_100"] == 0.9 and m["test/sim_max_reward_101"] == 0.4
    no_flag = summarize("train", [_episode(0, [0.5])])
    assert "train_success_rate" not in no_flag and no_flag["train_mean_score"] == 0.5
    assert summarize("test", []) == {}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    plugins = toy_plugin.toy_plugins()
    cache = tmp_path_factory.mktemp("cache")
    overrides = [
        f"env.cache_dir={cache}", "policy.horizon=4", "policy.n_action_steps=2",
        "eval.n_test=3", "eval.n_train=2", "eval.n_vis=2", "eval.max_steps=12",
    ]
    config = resolve_config(plugins, head="toy_mlp", env="toy_reach", loggers=(), overrides=overrides)
    adapter = plugins.registry.get("env", "toy_reach").build(config.env)
    torch.manual_seed(0)
    identity = (torch.zeros(2), torch.ones(2), torch.zeros(2))
    policy = build_policy(plugins, config, adapter.shape_meta, Normalizer({"pos": identity, "goal": identity, "action": identity}))
    return plugins, config, adapter, policy


def test_results_do_not_depend_on_the_number_of_env_processes(setup, tmp_path: Path) -> None:
    plugins, config, adapter, policy = setup
    here = run_rollouts(plugins, config, adapter, policy, media_dir=tmp_path / "one")
    two = attrs.evolve(config, eval=attrs.evolve(config.eval, n_envs=2))
    pooled = run_rollouts(plugins, two, adapter, policy, media_dir=tmp_path / "two")
    assert here.metrics == pooled.metrics
    assert [e.seed for e in here.test] == [100000, 100001, 100002] and [e.seed for e in here.train] == [0, 1]
    for a, b in zip(here.test + here.train, pooled.test + pooled.train):
        np.testing.assert_array_equal(a.actions, b.actions)
    for result, sub in ((here, "one"), (pooled, "two")):
        assert sorted(result.images) == ["test/trajectory_0", "test/trajectory_1"]
        assert sorted(Path(p).name for p in result.images.values()) == ["episode_0.png", "episode_1.png"]
        assert all(Path(p).parent == tmp_path / sub and Path(p).stat().st_size > 0 for p in result.images.values())
    # the drawings of replayed (pooled) episodes are those of the episodes as they ran
    assert (tmp_path / "one/episode_0.png").read_bytes() == (tmp_path / "two/episode_0.png").read_bytes()


def test_episode_records_the_executed_actions(setup) -> None:
    plugins, config, adapter, policy = setup
    policy.train()
    result = run_rollouts(plugins, config, adapter, policy)
    assert policy.training  # rollouts run in eval mode and give the mode back
    episode = result.test[0]
    assert episode.actions.shape == (len(episode.rewards), 2) and len(episode.infos) == len(episode.rewards)
    env = adapter.make_env()  # replaying the recorded actions reproduces the rewards
    env.reset(seed=episode.seed)
    rewards = [env.step(a)[1] for a in episode.actions]
    np.testing.assert_allclose(rewards, episode.rewards)
    assert result.images == {}  # no media_dir: nothing drawn


def test_worker_plugin_recipe_rebuilds_the_same_plugins(setup) -> None:
    plugins = setup[0]
    rebuilt = load_recipe(plugin_recipe(plugins))
    for kind in ("head", "objective", "env", "logger"):
        assert rebuilt.registry.names(kind) == plugins.registry.names(kind)


def test_evaluate_checkpoint_writes_metrics_and_pngs(tmp_path: Path, capsys) -> None:
    plugins = toy_plugin.toy_plugins()
    run = toy_plugin.train_toy(
        plugins, tmp_path / "runs", tmp_path / "cache", "train.max_steps=3", "eval.rollout_every=0", "eval.at_end=false", "train.val_every=0"
    )
    report = evaluate_checkpoint(plugins, run / "checkpoints" / LATEST, episodes=2, overrides=["eval.n_train=0"])
    (out,) = (run / "eval").iterdir()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["weights"] == "ema" and saved["global_step"] == 3 and saved["n_test"] == 2
    assert set(saved["metrics"]) >= {"test_mean_score", "test_success_rate", "test/sim_max_reward_100000", "test/sim_max_reward_100001"}
    assert not any(k.startswith("train") for k in saved["metrics"])
    assert sorted(p.name for p in out.glob("*.png")) == ["episode_0.png", "episode_1.png"]
    assert f"test_mean_score: {saved['metrics']['test_mean_score']:.4f}" in capsys.readouterr().out
    with pytest.raises(UserInputError, match="already holds a metrics.json"):
        evaluate_checkpoint(plugins, run / "checkpoints" / LATEST, out=out)


ROLLOUT_SCRIPT = '''
import sys
sys.path.insert(0, sys.argv[2])
import toy_plugin
import torch
from polx.config import resolve_config
from polx.data.normalizer import Normalizer
from polx.eval.rollout import run_rollouts
from polx.policy.policy import build_policy

if __name__ == "__main__":  # spawned workers import this file as __mp_main__: they must not start rollouts of their own
    plugins = toy_plugin.toy_plugins()
    overrides = [f"env.cache_dir={sys.argv[1]}", "policy.horizon=4", "policy.n_action_steps=2",
                 "eval.n_test=100000", "eval.n_train=0", "eval.n_vis=0", "eval.max_steps=12", "eval.n_envs=2"]
    config = resolve_config(plugins, head="toy_mlp", env="toy_reach", loggers=(), overrides=overrides)
    adapter = plugins.registry.get("env", "toy_reach").build(config.env)
    identity = (torch.zeros(2), torch.ones(2), torch.zeros(2))
    policy = build_policy(plugins, config, adapter.shape_meta, Normalizer({"pos": identity, "goal": identity, "action": identity}))
    print("started", flush=True)
    run_rollouts(plugins, config, adapter, policy)
'''


def test_sigterm_during_rollouts_in_worker_processes_leaves_none_running(tmp_path: Path) -> None:
    """A scheduler's SIGTERM while two rollout workers run: the command exits 143 saying so, with
    no traceback, and both workers are gone (the default handler would leave them running)."""
    import signal
    import subprocess
    import time

    import psutil

    (tmp_path / "rollouts.py").write_text(ROLLOUT_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "rollouts.py"), str(tmp_path / "cache"), str(Path(__file__).parent)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, workers = time.monotonic() + 180, set()
    while time.monotonic() < deadline and len(workers) < 2 and parent.poll() is None:
        time.sleep(0.2)
        try:  # the spawn workers (the resource tracker is a child too, and is not counted)
            workers |= {p.pid for p in psutil.Process(parent.pid).children() if "spawn_main" in " ".join(p.cmdline())}
        except psutil.Error:
            pass
    assert len(workers) == 2, "the workers never started"
    time.sleep(1.0)  # episodes are running
    parent.send_signal(signal.SIGTERM)
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == 128 + signal.SIGTERM and "stopped by signal SIGTERM" in err and "Traceback" not in err, err
    time.sleep(0.5)
    alive = [pid for pid in workers if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"rollout workers still running after SIGTERM: {alive}"
