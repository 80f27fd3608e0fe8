"""The executor seam (``polx.executor``): the local and Ray backends give the same per-seed results,
a Ray actor killed mid-evaluation has its episode re-run elsewhere (counted once), and the
backend's failures reach the user as clear errors before work starts.

Ray is real here: a local Ray of 2 CPUs started once for the module (``ray.init``), its workers
finding the tests' toy plugin through PYTHONPATH, as a cluster's workers find an installed plugin.
The tests that start many actors (a killed actor replaced, DAgger collection, sweeps) are marked
``slow``: ``pytest -m "slow or not slow" tests/test_executor.py`` runs them all.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toy_plugin

from polx.config import ExecConfig, resolve_config
from polx.data.normalizer import Normalizer
from polx.errors import PolxError, UserInputError
from polx.eval.rollout import EpisodeWorker, run_rollouts, runtime_factory
from polx.executor import LocalExecutor, check_backend
from polx.policy.policy import build_policy

ray = pytest.importorskip("ray", reason="the Ray backend's tests need Ray (scripts/bootstrap.sh --dev installs it)")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray of 2 CPUs whose workers (and the ``polx train`` cells they start) see the toy plugin."""
    if not ray.is_initialized():
        env = toy_plugin.installed_env(tmp_path_factory.mktemp("ray"))
        env.pop("POLX_DISABLE_PLUGINS")  # the workers also build the shipped PushT env
        os.environ.setdefault("RAY_worker_niceness", "0")  # as polx's own ray.init: workers not starved by other load
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    plugins = toy_plugin.toy_plugins()
    overrides = [
        f"env.cache_dir={tmp_path_factory.mktemp('cache')}", "policy.horizon=4", "policy.n_action_steps=2",
        "eval.n_train=0", "eval.n_vis=0", "eval.max_steps=10",
    ]  # fmt: skip
    config = resolve_config(plugins, head="toy_mlp", env="toy_reach", loggers=(), overrides=overrides)
    adapter = plugins.registry.get("env", "toy_reach").build(config.env)
    torch.manual_seed(0)
    identity = (torch.zeros(2), torch.ones(2), torch.zeros(2))
    policy = build_policy(plugins, config, adapter.shape_meta, Normalizer({"pos": identity, "goal": identity, "action": identity}))
    return plugins, config, adapter, policy


def _with(config, n_test: int, start: int, backend: str, n_envs: int):
    return attrs.evolve(
        config, eval=attrs.evolve(config.eval, n_test=n_test, test_start_seed=start, n_envs=n_envs), exec=ExecConfig(backend=backend)
    )


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_test=st.integers(1, 3), start=st.integers(100000, 100200))
def test_ray_and_local_backends_give_the_same_per_seed_rewards(ray_cluster, setup, n_test, start) -> None:
    plugins, config, adapter, policy = setup
    here = run_rollouts(plugins, _with(config, n_test, start, "local", 1), adapter, policy)
    on_ray = run_rollouts(plugins, _with(config, n_test, start, "ray", 2), adapter, policy)
    assert on_ray.metrics == here.metrics
    assert [e.seed for e in on_ray.test] == list(range(start, start + n_test))
    for a, b in zip(here.test, on_ray.test):
        np.testing.assert_array_equal(a.actions, b.actions)


def _make_worker(plugins, config, adapter, policy):
    return functools.partial(EpisodeWorker, runtime_factory(plugins, config, adapter, policy), adapter, config.eval.max_steps)


@pytest.mark.slow  # Ray actors each import torch and build their policy: a minute or more on 2 cores
def test_an_actor_killed_mid_evaluation_has_its_episode_rerun_and_counted_once(ray_cluster, setup) -> None:
    from polx.executor.ray_backend import ACTOR_PREFIX, RayExecutor

    plugins, config, adapter, policy = setup
    jobs = [("test", 100000 + i, i) for i in range(6)]
    make_worker = _make_worker(plugins, config, adapter, policy)
    reference = LocalExecutor().map(make_worker, jobs, n_workers=1)
    arrived: list = []

    def on_result(job, episode) -> None:
        arrived.append(job)
        if len(arrived) == 1:  # the first episode is back: kill every worker but start no new ones
            for info in ray.util.list_named_actors(all_namespaces=False):
                name = info if isinstance(info, str) else info["name"]
                if name.startswith(ACTOR_PREFIX):
                    ray.kill(ray.get_actor(name), no_restart=True)

    backend = RayExecutor()
    results = backend.map(make_worker, jobs, n_workers=2, on_result=on_result)
    assert sorted(arrived) == sorted(jobs)  # every episode reported exactly once
    assert backend.last_map["replaced"] >= 1 and backend.last_map["actors"] > 2
    for a, b in zip(reference, results):
        assert a.seed == b.seed
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)


def test_a_failing_job_on_ray_is_an_error_naming_the_job(ray_cluster) -> None:
    from polx.executor.ray_backend import RayExecutor

    with pytest.raises(PolxError, match=r"a Ray worker failed on job 3: ZeroDivisionError"):
        RayExecutor().map(lambda: (lambda job: 1 / (job - 3)), [1, 2, 3, 4], n_workers=2)


def test_an_unreachable_ray_address_is_named_within_seconds(setup, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(PolxError, match=r"exec.ray_address=127.0.0.1:9: no Ray cluster answers there"):
        check_backend(ExecConfig(backend="ray", ray_address="127.0.0.1:9"))
    assert time.monotonic() - start < 10
    done = subprocess.run(
        [sys.executable, "-m", "polx", "train", "--head", "imf_attnres", "--env", "pusht", "--run-dir", str(tmp_path / "run"),
         "--backend", "ray", "exec.ray_address=127.0.0.1:9", "env.obs_type=keypoints"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and "exec.ray_address=127.0.0.1:9: no Ray cluster answers there" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


def test_ray_backend_without_ray_installed_exits_2_with_the_install_command(tmp_path: Path) -> None:
    """A ``ray`` package that fails to import stands in for Ray being absent (the only way to take an
    installed package away from one subprocess)."""
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "polx", "train", "--head", "imf_attnres", "--env", "pusht", "--run-dir", str(tmp_path / "run"),
         "--backend", "ray", "env.obs_type=keypoints"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 2 and "pip install 'polx[ray]'" in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("address", ["localhost", "http://x:1", "a b:1", "host:port"])
def test_a_malformed_ray_address_is_a_config_error(address: str) -> None:
    with pytest.raises(ValueError, match="ray_address: must be auto, HOST:PORT"):
        ExecConfig(ray_address=address)
    with pytest.raises(UserInputError, match="exec.backend: must be one of local, ray"):
        resolve_config(toy_plugin.toy_plugins(), head="toy_mlp", env="toy_reach", overrides=["exec.backend=slurm"])


def _pusht_policy():
    from polx.plugins import load_plugins
    from polx.policy.encoder import obs_keys

    plugins = load_plugins()
    overrides = ["head.n_emb=32", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1", "env.obs_type=keypoints", "eval.n_envs=2"]
    config = resolve_config(plugins, head="imf_attnres", env="pusht", overrides=overrides)
    adapter = plugins.build_env(config)
    rng = np.random.default_rng(0)
    rgb, low_dim = obs_keys(adapter.shape_meta)
    data = {key: rng.random((32, *adapter.shape_meta["obs"][key]["shape"])) * 512 for key in low_dim}
    data["action"] = rng.random((32, *adapter.shape_meta["action"]["shape"])) * 512
    torch.manual_seed(0)
    return plugins, config, adapter, build_policy(plugins, config, adapter.shape_meta, Normalizer.fit(data, identity_keys=rgb))


def test_dagger_collection_without_a_terminal_prints_one_line_per_episode(capsys) -> None:
    from polx.dagger.collect import collect

    plugins, config, adapter, policy = _pusht_policy()
    config = attrs.evolve(config, eval=attrs.evolve(config.eval, n_envs=1))
    episodes = collect(plugins, config, adapter, policy, [200000, 200001], beta=0.5, max_steps=6, threshold=0.1, progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("polx: dagger rollout")]
    assert len(lines) == 2 and lines[1].startswith("polx: dagger rollout 2/2: seed 200001")
    assert all(f"{e.steps} steps, the teacher in control on {e.teacher_steps}" in line for e, line in zip(episodes, lines))


@pytest.mark.slow  # Ray actors each import torch and build their policy: a minute or more on 2 cores
def test_dagger_labelled_rollouts_on_ray_equal_the_local_ones(ray_cluster) -> None:
    """DAgger collection (the PushT expert labelling every visited state) through the Ray backend:
    the same labelled episodes, seed by seed, as collected in this process."""
    from polx.dagger.collect import collect

    plugins, config, adapter, policy = _pusht_policy()
    kwargs = dict(beta=0.5, max_steps=12, threshold=0.1, progress=False)
    seeds = [200000, 200001, 200002]
    here = collect(plugins, attrs.evolve(config, eval=attrs.evolve(config.eval, n_envs=1)), adapter, policy, seeds, **kwargs)
    on_ray = collect(plugins, attrs.evolve(config, exec=ExecConfig(backend="ray")), adapter, policy, seeds, **kwargs)
    assert [e.seed for e in on_ray] == seeds
    for a, b in zip(here, on_ray):
        assert a.teacher_steps == b.teacher_steps and a.disagreements == b.disagreements
        assert sorted(a.arrays) == sorted(b.arrays)
        for key in a.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key])


# --- sweeps: each cell a Ray task running ``polx train``


@pytest.mark.slow  # Ray actors each import torch and build their policy: a minute or more on 2 cores
def test_a_sweep_on_ray_writes_the_same_cells_and_summary_and_resumes(tmp_path: Path) -> None:
    """``polx sweep --backend ray`` (a Ray started for the command): every cell finished in its run
    directory, the summary as a local sweep writes it, and a second run finds nothing to do."""
    env = {**os.environ, **toy_plugin.installed_env(tmp_path)}
    base = toy_plugin.toy_overrides(tmp_path / "cache", "train.max_steps=4", "train.val_every=0", "eval.rollout_every=0",
                                    "eval.n_test=2", "eval.n_train=0", "eval.n_vis=0", "eval.max_steps=8", "train.checkpoint_every=0")  # fmt: skip
    cmd = [sys.executable, "-m", "polx", "sweep", "--head", "toy_mlp", "--env", "toy_reach", "--out", str(tmp_path / "runs"),
           "--name", "grid", "--grid", "head.hidden=8,16", "--backend", "ray", "exec.cpus_per_cell=1", *base]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "as Ray tasks of 1 CPU, 0 GPU" in done.stdout and done.stdout.count("[sweep] done:") == 2
    root = tmp_path / "runs" / "sweeps" / "grid"
    rows = (root / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",finished," in row for row in rows[1:])
    for hidden in ("8", "16"):
        config = (root / f"head.hidden={hidden}" / "config.yaml").read_text()
        assert f"hidden: {hidden}" in config and "backend: local" in config  # a cell's own rollouts: its own processes
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "2 finished, running 0" in again.stdout, again.stdout + again.stderr


@pytest.mark.slow  # Ray actors each import torch and build their policy: a minute or more on 2 cores
def test_a_cell_whose_ray_worker_dies_is_reported_failed_and_the_next_run_finishes_it(ray_cluster, tmp_path: Path) -> None:
    import threading

    import psutil

    from polx.sweep import cell_status, cells, run_cells

    (cell,) = cells({"head.hidden": ["8"]}, tmp_path / "sweep")
    overrides = toy_plugin.toy_overrides(tmp_path / "cache", "train.max_steps=400000", "train.val_every=0", "eval.rollout_every=0",
                                         "eval.at_end=false", "train.checkpoint_every=50")  # fmt: skip
    killed: list[int] = []

    def kill_the_worker() -> None:  # once the cell's training has written a checkpoint: SIGKILL the Ray worker running it
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (cell.dir / "checkpoints" / "latest.ckpt").is_file():
            time.sleep(0.2)
        for proc in psutil.process_iter(["cmdline"]):
            if str(cell.dir) in " ".join(proc.info["cmdline"] or []) and "train" in (proc.info["cmdline"] or []):
                killed.append(proc.parent().pid)
                proc.parent().kill()
                return

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    codes = run_cells([cell], ["--head", "toy_mlp", "--env", "toy_reach"], overrides, 1, tmp_path / "logs", ExecConfig(backend="ray"))
    killer.join()
    assert killed and codes == {cell.label: -1}
    deadline = time.monotonic() + 60  # the training died with its worker (PR_SET_PDEATHSIG) and let go of its run
    while time.monotonic() < deadline and cell_status(cell) == "running":
        time.sleep(0.2)
    assert cell_status(cell) == "resumable"
    short = [o for o in overrides if not o.startswith("train.max_steps=")] + ["train.max_steps=60"]
    assert run_cells([cell], ["--head", "toy_mlp", "--env", "toy_reach"], short, 1, tmp_path / "logs", ExecConfig(backend="ray")) == {cell.label: 0}
    assert cell_status(cell) == "finished"


@pytest.mark.slow  # a whole polx dagger (Phase I, one round, rollouts on Ray actors): about a minute
def test_a_dagger_round_on_ray_grows_the_data_by_the_rollouts_steps(ray_cluster, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from polx import cli
    from polx.data.replay_buffer import ReplayBuffer
    from polx.plugins import load_plugins
    from polx.runs import build_env_adapter

    demos = tmp_path / "demos.zarr"
    build_env_adapter(load_plugins(), "pusht", ["env.demo_max_steps=12"]).generate_demos(demos, 2, seed=0, keep_all=True, progress=False)
    tiny = [
        "head.n_emb=32", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1", "env.obs_type=keypoints",
        "train.max_steps=4", "train.batch_size=4", "train.progress=false", "train.val_every=0", "train.threads=1",
        "train.checkpoint_every=2", "data.val_ratio=0.0", "eval.n_test=1", "eval.n_train=0", "eval.max_steps=8",
        "eval.n_vis=0", "eval.n_envs=2", "dagger.steps_per_round=4", "dagger.beta=0.0",
    ]  # fmt: skip
    run = tmp_path / "run"
    result = CliRunner().invoke(cli.main, ["dagger", "--head", "imf_attnres", "--env", "pusht", "--dataset", str(demos), "--rounds", "1",
                                           "--episodes", "3", "--run-dir", str(run), "--backend", "ray", *tiny])  # fmt: skip
    assert result.exit_code == 0, result.output
    start, final = ReplayBuffer.open(demos), ReplayBuffer.open(run / "data" / "round_001.zarr")
    table = json.loads((run / "summary.json").read_text())["table"]
    assert final.n_episodes == start.n_episodes + 3 and final.n_steps == start.n_steps + table[1]["steps_added"]
