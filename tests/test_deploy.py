"""A trained policy leaves polx: ``polx export``, ``load_policy`` (torch and onnxruntime), ``polx serve``,
``PolicyClient`` and ``polx eval --policy``, on a real tiny PushT (keypoints) run made by ``polx train``.

The run is trained once per module (a few optimizer steps of a tiny ``imf_attnres``: wiring, not
quality) and exported once with ``--onnx``; each test copies what it tampers with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.plugins import load_plugins

_SCRIPT = Path(sys.executable).parent / "polx"
POLX = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "polx.cli"]  # the console script, as a user runs it
TINY = [
    "env.obs_type=keypoints", "head.n_emb=32", "head.n_layer=2", "head.n_head=2", "head.n_kv_head=1",
    "train.max_steps=4", "train.batch_size=4", "train.threads=1", "train.val_every=0", "train.progress=false",
    "data.val_ratio=0.0", "eval.n_test=2", "eval.n_train=0", "eval.max_steps=24", "eval.n_vis=0",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run_polx(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*POLX, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def plugins():
    loaded = load_plugins(entry_points=list(metadata.entry_points(group="polx")))
    for kind, name in (("head", "imf_attnres"), ("env", "pusht")):
        if name not in loaded.registry.names(kind):
            pytest.skip(f"{kind} {name!r} is not installed")
    return loaded


@pytest.fixture(scope="module")
def run_dir(plugins, tmp_path_factory) -> Path:
    """A real run: 2 generated PushT demos, then ``polx train`` (a subprocess, as a user runs it)."""
    from polx.runs import build_env_adapter

    root = tmp_path_factory.mktemp("deploy")
    data = root / "demos.zarr"
    build_env_adapter(plugins, "pusht", ["env.obs_type=keypoints", "env.demo_max_steps=40"]).generate_demos(data, 2, seed=0, keep_all=True, progress=False)
    run = root / "run"
    done = run_polx("train", "--head", "imf_attnres", "--env", "pusht", "--dataset", str(data), "--run-dir", str(run), *TINY)
    assert done.returncode == 0, done.stderr
    return run


@pytest.fixture(scope="module")
def exported(run_dir) -> Path:
    out = run_dir.parent / "exported"
    done = run_polx("export", str(run_dir), "--out", str(out), "--onnx")
    assert done.returncode == 0, done.stderr
    return out


def _obs(rng: np.random.Generator) -> dict:
    return {"keypoints": (rng.random(20) * 512).astype(np.float32)}


# ---------------------------------------------------------------------------------------------
# export


def test_export_writes_weights_config_and_card_and_no_pickle(exported: Path, run_dir: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.safetensors", "policy.onnx"]
    for path in exported.iterdir():
        head = path.read_bytes()[:2]
        assert head != b"\x80\x04" and head != b"PK", f"{path.name} looks like a pickle or a torch zip"
    info = json.loads((exported / "config.json").read_text())
    assert info["weights"] == "ema" and info["global_step"] == 4
    assert info["plugins"]["head"] == {"name": "imf_attnres", "distribution": "polx-plugin-imf-attnres", "version": metadata.version("polx-plugin-imf-attnres")}
    assert info["obs"] == {"keypoints": {"shape": [20], "type": "low_dim", "dtype": "float32"}}
    assert (info["n_obs_steps"], info["horizon"], info["n_action_steps"], info["sampling_steps"]) == (2, 16, 8, 1)
    assert info["action"]["shape"] == [2] and info["action"]["layout"] == "natural"
    assert set(info["normalizer"]) == {"action", "keypoints"} and len(info["normalizer"]["keypoints"]["scale"]) == 20
    from safetensors.numpy import load_file

    from polx.base.checkpoint import load_checkpoint

    ema = load_checkpoint(run_dir / "checkpoints" / "latest.ckpt")["ema"]["model"]
    weights = load_file(str(exported / "model.safetensors"))
    assert set(weights) == set(ema)
    for key, value in ema.items():  # the EMA weights, not the trained ones
        np.testing.assert_array_equal(weights[key], value.numpy())
    card = (exported / "README.md").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"{summary['metrics']['test_mean_score']:.3f}" in card and "test seeds 100000..100001" in card
    assert "polx train --head imf_attnres --env pusht" in card and "2 training" in card


def test_export_of_a_run_without_checkpoints_exits_2_and_writes_nothing(run_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare_run"
    bare.mkdir()
    shutil.copy(run_dir / "config.yaml", bare / "config.yaml")
    out = tmp_path / "out"
    done = run_polx("export", str(bare), "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert "has no checkpoint" in done.stderr and "nothing was written" in done.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bare_run"]


def test_export_refuses_an_existing_out(run_dir: Path, tmp_path: Path) -> None:
    from polx.deploy.export import export_policy
    from polx.errors import UserInputError

    (tmp_path / "taken").mkdir()
    with pytest.raises(UserInputError, match="already exists"):
        export_policy(None, run_dir, tmp_path / "taken")


def test_onnx_export_of_an_objective_without_sample_from_noise_is_refused() -> None:
    from types import SimpleNamespace

    from polx.deploy.onnx_export import check_exportable
    from polx.errors import UserInputError

    ddpm = pytest.importorskip("polx_ddpm_transformer.objective")
    from polx_ddpm_transformer.config import DDPMConfig

    policy = SimpleNamespace(objective=ddpm.DDPMObjective(DDPMConfig()))
    config = SimpleNamespace(components=SimpleNamespace(objective="ddpm"))
    with pytest.raises(UserInputError, match="'ddpm' objective's sampler cannot be exported as one graph.*runtime='torch'"):
        check_exportable(policy, config)


def test_onnx_file_is_one_graph_with_the_documented_inputs(exported: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(exported / "policy.onnx"))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["keypoints", "noise"]
    assert [o.name for o in model.graph.output] == ["action", "action_pred"]
    assert not {n.op_type for n in model.graph.node} & {"Loop", "If", "Scan", "RandomNormal", "RandomNormalLike"}


# ---------------------------------------------------------------------------------------------
# load_policy


def test_load_policy_acts_as_the_checkpoint_does(plugins, exported: Path, run_dir: Path) -> None:
    import polx
    from polx.eval.evaluate import policy_from_checkpoint
    from polx.policy.runtime import ChunkRuntime
    from polx.runs import config_from_saved
    from polx.base.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir / "checkpoints" / "latest.ckpt")
    config = config_from_saved(plugins, state["config"])
    adapter = plugins.registry.get("env", "pusht").build(config.env)
    reference = ChunkRuntime(policy_from_checkpoint(plugins, config, adapter.shape_meta, state, run_dir), num_steps=config.eval.num_steps)
    loaded = polx.load_policy(exported, plugins=plugins)
    rng = np.random.default_rng(0)
    observations = [_obs(rng) for _ in range(20)]
    for runtime in (reference, loaded):
        runtime.reset(seed=7)
    for obs in observations:
        np.testing.assert_array_equal(loaded.act(obs), reference.act(obs))
    assert loaded.n_chunks == 3  # 20 steps, 8 actions per chunk
    chunk = loaded.predict_chunk([observations[0], observations[1]])
    assert chunk.shape == (8, 2) and loaded.metadata["n_action_steps"] == 8


def test_tampered_weights_exit_2_naming_the_tensor(exported: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    import polx
    from polx.errors import UserInputError

    weights = load_file(str(exported / "model.safetensors"))
    name = "head.u_out.weight"
    missing, reshaped = tmp_path / "missing", tmp_path / "reshaped"
    for target in (missing, reshaped):
        shutil.copytree(exported, target)
    save_file({k: v for k, v in weights.items() if k != name}, str(missing / "model.safetensors"))
    save_file({**weights, name: np.zeros((3, 3), np.float32)}, str(reshaped / "model.safetensors"))
    done = run_polx("eval", "--policy", str(missing), "--episodes", "1", "--out", str(tmp_path / "eval"))
    assert done.returncode == 2 and f"tensor {name!r} is missing" in done.stderr, done.stderr
    assert not (tmp_path / "eval").exists()
    with pytest.raises(UserInputError, match=rf"tensor '{name}' has shape \[3, 3\], the policy in config.json expects \[2, 32\]"):
        polx.load_policy(reshaped)


def test_load_policy_names_a_missing_plugin_with_its_pip_line(exported: Path) -> None:
    import polx
    from polx.errors import UserInputError

    no_plugins = load_plugins(entry_points=[])
    with pytest.raises(UserInputError, match=r"head 'imf_attnres' from polx-plugin-imf-attnres is not installed: pip install polx-plugin-imf-attnres=="):
        polx.load_policy(exported, plugins=no_plugins)
    with pytest.raises(UserInputError, match="has no policy.onnx|no config.json"):
        polx.load_policy(exported.parent / "run", runtime="onnx")


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), spread=st.floats(0.1, 2.0))
def test_onnx_and_torch_agree_on_any_observation_and_noise(exported: Path, seed: int, spread: float) -> None:
    """Same observations, same noise: the chunks agree to float32 rounding (in the network's
    normalised action units, where [-1, 1] spans the data; PushT's are pixels, 250x larger)."""
    torch_policy, onnx_policy = _runtimes(exported)
    rng = np.random.default_rng(seed)
    history = {"keypoints": (rng.random((2, 20)) * 512 * spread).astype(np.float32)}
    noise = rng.standard_normal((16, 2)).astype(np.float32) * spread
    scale = np.asarray(torch_policy.info["normalizer"]["action"]["scale"])
    a, b = torch_policy.predict_chunk(history, noise=noise), onnx_policy.predict_chunk(history, noise=noise)
    assert np.max(np.abs(a - b) * scale) <= 1e-5


_LOADED: dict = {}


def _runtimes(exported: Path):
    import polx

    if exported not in _LOADED:
        _LOADED[exported] = (polx.load_policy(exported), polx.load_policy(exported, runtime="onnx"))
    return _LOADED[exported]


def test_onnx_runtime_draws_the_noise_torch_draws(exported: Path) -> None:
    torch_policy, onnx_policy = _runtimes(exported)
    rng = np.random.default_rng(1)
    observations = [_obs(rng) for _ in range(17)]
    for runtime in (torch_policy, onnx_policy):
        runtime.reset(seed=100000)
    scale = np.asarray(torch_policy.info["normalizer"]["action"]["scale"])
    for obs in observations:  # three chunks, each from the seeded generator's next draw
        assert np.max(np.abs(torch_policy.act(obs) - onnx_policy.act(obs)) * scale) <= 1e-5


def test_onnx_runtime_runs_where_torch_cannot_be_imported(exported: Path) -> None:
    script = f"""
import importlib.abc, json, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed here")
sys.meta_path.insert(0, NoTorch())
import numpy as np
import polx
policy = polx.load_policy({str(exported)!r}, runtime="onnx")
policy.reset(seed=3)
rng = np.random.default_rng(2)
actions = [policy.act({{"keypoints": (rng.random(20) * 512).astype(np.float32)}}).tolist() for _ in range(9)]
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
print(json.dumps(actions))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    torch_policy, _ = _runtimes(exported)
    torch_policy.reset(seed=3)
    rng = np.random.default_rng(2)
    expected = [torch_policy.act({"keypoints": (rng.random(20) * 512).astype(np.float32)}) for _ in range(9)]
    scale = np.asarray(torch_policy.info["normalizer"]["action"]["scale"])
    assert np.max(np.abs(np.array(json.loads(done.stdout)) - np.array(expected)) * scale) <= 1e-5


# ---------------------------------------------------------------------------------------------
# polx eval --policy


def test_eval_policy_gives_the_checkpoints_per_seed_rewards(plugins, exported: Path, run_dir: Path, tmp_path: Path) -> None:
    from polx.deploy.evaluate import evaluate_policy
    from polx.eval.evaluate import evaluate_checkpoint

    reference = evaluate_checkpoint(plugins, run_dir / "checkpoints" / "latest.ckpt", episodes=3, out=tmp_path / "ckpt")["metrics"]
    # over two worker processes (each loads the directory): the per-seed rewards do not depend on it
    done = run_polx("eval", "--policy", str(exported), "--episodes", "3", "--out", str(tmp_path / "torch"), "eval.n_envs=2")
    assert done.returncode == 0, done.stderr
    assert "rollout episode 3/3: test seed" in done.stderr  # one line per episode when stderr is a file
    through_torch = json.loads((tmp_path / "torch" / "metrics.json").read_text())["metrics"]
    through_onnx = evaluate_policy(plugins, exported, runtime="onnx", episodes=3, out=tmp_path / "onnx")["metrics"]
    per_seed = sorted(k for k in reference if k.startswith("test/sim_max_reward_"))
    assert len(per_seed) == 3
    assert {k: through_torch[k] for k in per_seed} == {k: reference[k] for k in per_seed}
    for key in per_seed:  # the same noise, float32 rounding apart
        assert through_onnx[key] == pytest.approx(reference[key], abs=1e-4)


# ---------------------------------------------------------------------------------------------
# polx serve and PolicyClient


@pytest.fixture(scope="module")
def server(exported: Path):
    """``polx serve DIR --port 0`` in a subprocess; yields (url, port)."""
    proc = subprocess.Popen([*POLX, "serve", str(exported), "--port", "0", "--host", "127.0.0.1"], stderr=subprocess.PIPE, text=True, env=ENV)
    deadline, line = time.monotonic() + 120, ""
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stderr.readline()
        if "on ws://" in line:
            break
    assert "on ws://" in line, f"polx serve did not start: {line}{proc.stderr.read() if proc.poll() is not None else ''}"
    port = int(line.split("on ws://127.0.0.1:")[1].split()[0])
    yield f"ws://127.0.0.1:{port}", port
    proc.terminate()
    proc.wait(timeout=30)


def test_server_gives_each_client_its_own_history_and_survives_bad_messages(server, exported: Path) -> None:
    from websockets.sync.client import connect

    import polx
    from polx.deploy import wire

    url, port = server
    local = polx.load_policy(exported)
    sessions = {name: local.session() for name in "ab"}
    rng = np.random.default_rng(5)
    streams = {name: [_obs(rng) for _ in range(12)] for name in "ab"}
    with polx.PolicyClient(url) as a, polx.PolicyClient(url) as b:
        assert a.metadata["n_obs_steps"] == 2 and a.metadata["obs"]["keypoints"]["shape"] == [20]
        clients = {"a": a, "b": b}
        for name, seed in (("a", 1), ("b", 2)):
            clients[name].reset(seed=seed)
            sessions[name].reset(seed=seed)
        with connect(url, proxy=None) as raw:  # a third client that sends garbage
            assert wire.unpackb(raw.recv())["type"] == "metadata"
            for bad in (b"\xc1\x00garbage", "text", wire.packb([1, 2]), wire.packb({"type": "act", "obs": {"keypoints": np.zeros(3)}}),
                        wire.packb({"type": "act", "obs": {"keypoints": {"__ndarray__": True, "data": b"12", "dtype": "<f4", "shape": [20]}}}),
                        wire.packb({"type": "fly"})):  # fmt: skip
                raw.send(bad)
                reply = wire.unpackb(raw.recv())
                assert reply["type"] == "error" and reply["error"] and "server_timing" in reply
            for t in range(12):  # interleaved: each client's actions follow its own history only
                for name in "ab":
                    np.testing.assert_array_equal(clients[name].act(streams[name][t]), sessions[name].act(streams[name][t]))
                    assert clients[name].server_timing["infer_ms"] >= 0.0
        with pytest.raises(polx.deploy.client.PolicyServerError, match="observation 'keypoints' has shape \\[5\\]"):
            a.act({"keypoints": np.zeros(5)})
        assert a.act(streams["a"][0]).shape == (2,)  # still served after the error
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read())
    assert health["status"] == "ok" and health["runtime"] == "torch"


def test_eval_through_the_server_gives_the_checkpoints_per_seed_rewards(plugins, server, run_dir: Path, tmp_path: Path) -> None:
    from polx.deploy.evaluate import evaluate_policy
    from polx.eval.evaluate import evaluate_checkpoint

    url, _ = server
    reference = evaluate_checkpoint(plugins, run_dir / "checkpoints" / "latest.ckpt", episodes=2, out=tmp_path / "ckpt")["metrics"]
    remote = evaluate_policy(plugins, url, episodes=2, out=tmp_path / "remote", overrides=["eval.n_envs=2"])["metrics"]  # two sessions
    assert {k: v for k, v in remote.items() if k.startswith("test/")} == {k: v for k, v in reference.items() if k.startswith("test/")}


def test_serve_on_a_port_in_use_exits_1_naming_it(server, exported: Path) -> None:
    _, port = server
    done = run_polx("serve", str(exported), "--port", str(port), "--host", "127.0.0.1", timeout=60)
    assert done.returncode == 1 and f"port {port} on 127.0.0.1 is in use" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
