"""``polx dagger --teacher CKPT``: a trained checkpoint labels the student's states, with the real
PushT env, tiny heads trained for a few steps, and real checkpoints.

The stored label of every step is the teacher's action recomputed from the stored teacher
observations (its own history, a fresh prediction each step); a keypoints teacher labels an
image student; Phase I stores unrolls from the teacher and its intermediate checkpoints, all
labelled by the final teacher; a round refits the normaliser and restarts the learning-rate
schedule as configured; bad teachers exit 2 with nothing written; a run killed in Phase I or in
a round resumes to the same data.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from polx import cli
from polx.config import resolve_config
from polx.data.normalizer import Normalizer
from polx.data.replay_buffer import ReplayBuffer
from polx.plugins import load_plugins
from polx.policy.policy import build_policy
from polx.runs import config_from_saved, read_run_config
from test_dagger import _installed, _refused  # the same exit-2, nothing-written check as the expert's DAgger tests

TINY_HEAD = ["head.n_emb=32", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1"]
TINY_RUN = [
    "train.batch_size=4", "train.progress=false", "train.val_every=0", "train.threads=1", "train.log_every=1",
    "data.val_ratio=0.0", "eval.n_test=1", "eval.n_train=0", "eval.max_steps=8", "eval.n_vis=1",
]  # fmt: skip
IMAGE = ["env.obs_type=image", "env.render_size=32", "encoder.backbone=convnet", "encoder.channels=[8, 8]",
         "encoder.feature_dim=16", "encoder.crop_shape=[28, 28]"]  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A keypoints imf_attnres run of 6 steps on 3 expert demos, keeping its checkpoints at steps 2, 4 and 6."""
    if "pusht" not in _installed().registry.names("env"):
        pytest.skip("needs the envs plugin")
    from polx.runs import build_env_adapter

    root = tmp_path_factory.mktemp("teacher")
    demos = root / "demos.zarr"
    build_env_adapter(_installed(), "pusht", ["env.demo_max_steps=30", "env.render_size=32"]).generate_demos(demos, 3, seed=0, keep_all=True, progress=False)
    argv = ["train", "--head", "imf_attnres", "--env", "pusht", "--dataset", str(demos), "--run-dir", str(root / "run"), *TINY_HEAD, *TINY_RUN,
            "env.obs_type=keypoints", "train.max_steps=6", "train.checkpoint_every=2", "eval.rollout_every=2", "train.topk=5"]  # fmt: skip
    result = CliRunner().invoke(cli.main, argv)
    assert result.exit_code == 0, result.output
    return root / "run"


HEADS = {"imf_attnres": TINY_HEAD, "ddpm_transformer": ["head.n_emb=32", "head.n_layer=1", "head.n_head=2", "eval.num_steps=4"]}


@pytest.fixture(scope="module")
def ddpm_teacher(teacher) -> Path:
    """A ddpm_transformer keypoints run on the same demos (DDIM-4 at evaluation, so labelling is quick)."""
    run = teacher.parent / "ddpm"
    argv = ["train", "--head", "ddpm_transformer", "--env", "pusht", "--dataset", str(teacher.parent / "demos.zarr"), "--run-dir", str(run),
            *HEADS["ddpm_transformer"], *TINY_RUN, "env.obs_type=keypoints", "train.max_steps=2"]  # fmt: skip
    result = CliRunner().invoke(cli.main, argv)
    assert result.exit_code == 0, result.output
    return run


def _student(obs: list[str], head: str = "imf_attnres"):
    """A freshly initialised student (its actions are far from the teacher's, so states differ from the teacher's own)."""
    from polx.policy.encoder import obs_keys

    plugins = _installed()
    config = resolve_config(plugins, head=head, env="pusht", overrides=[*HEADS[head], *obs, "eval.n_envs=1"])
    adapter = plugins.build_env(config)
    rng = np.random.default_rng(0)
    rgb, low_dim = obs_keys(adapter.shape_meta)
    data = {key: rng.random((32, *adapter.shape_meta["obs"][key]["shape"])) * 512 for key in low_dim}
    data["action"] = rng.random((32, 2)) * 512
    torch.manual_seed(0)
    return plugins, config, adapter, build_policy(plugins, config, adapter.shape_meta, Normalizer.fit(data, identity_keys=rgb))


def _replayed_labels(plugins, spec, arrays: dict, seed: int, chunks: bool = False) -> np.ndarray:
    """The teacher's per-step actions recomputed from the stored ``teacher_<key>`` rows, without the
    runtime under test: at step t, one ``predict_action`` on the last n_obs_steps stored observations
    (the first repeated at the start), noise from a generator seeded with the episode's seed, and
    the predicted chunk's first action (the one for step t); with ``chunks``, the whole predicted
    chunks ``(steps, horizon, A)``."""
    from polx.dagger.teacher import TEACHER_PREFIX

    policy = spec.build(plugins)
    generator = torch.Generator().manual_seed(seed)
    obs = {k[len(TEACHER_PREFIX) :]: v for k, v in arrays.items() if k.startswith(TEACHER_PREFIX)}
    labels = []
    with torch.no_grad():
        for t in range(len(arrays["action"])):
            steps = [max(0, i) for i in range(t - policy.n_obs_steps + 1, t + 1)]
            batch = {k: torch.as_tensor(v[steps], dtype=torch.float32)[None] for k, v in obs.items()}
            out = policy.predict_action(batch, num_steps=spec.config.eval.num_steps, generator=generator)
            labels.append(out["action_pred"][0].numpy() if chunks else out["action"][0, 0].numpy())
    return np.stack(labels)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeds=st.lists(st.integers(0, 10**6), min_size=1, max_size=2, unique=True), beta=st.sampled_from([0.0, 0.5]))
def test_every_stored_label_is_the_teachers_action_from_its_own_stored_history(teacher, seeds, beta) -> None:
    from polx.dagger.collect import collect
    from polx.dagger.teacher import load_checkpoint_spec

    plugins, config, adapter, student = _student(["env.obs_type=keypoints"])
    spec = load_checkpoint_spec(plugins, teacher, adapter, "pusht")
    episodes = collect(plugins, config, adapter, student, seeds, beta=beta, max_steps=12, threshold=0.1, progress=False, teacher=spec)
    for episode in episodes:
        np.testing.assert_array_equal(episode.arrays["action"], _replayed_labels(plugins, spec, episode.arrays, episode.seed))
        # the teacher saw this state: its keypoints are what the dataset row converts to
        rows = {k: episode.arrays[k] for k in ("state", "keypoint", "action")}
        np.testing.assert_allclose(adapter.dataset_obs(rows)["keypoints"], episode.arrays["teacher_keypoints"], atol=1e-4)
        assert episode.label_seconds > 0
    assert beta > 0 or all(e.teacher_steps == 0 for e in episodes)


@pytest.mark.parametrize("teacher_head, student_head", [("ddpm_transformer", "imf_attnres"), ("imf_attnres", "ddpm_transformer")])
def test_teacher_and_student_may_be_different_heads(teacher, ddpm_teacher, teacher_head, student_head) -> None:
    from polx.dagger.collect import collect
    from polx.dagger.teacher import load_checkpoint_spec

    plugins, config, adapter, student = _student(["env.obs_type=keypoints"], head=student_head)
    spec = load_checkpoint_spec(plugins, ddpm_teacher if teacher_head == "ddpm_transformer" else teacher, adapter, "pusht")
    assert spec.config.components.head == teacher_head
    (episode,) = collect(plugins, config, adapter, student, [11], beta=0.0, max_steps=6, threshold=0.1, progress=False, teacher=spec)
    np.testing.assert_array_equal(episode.arrays["action"], _replayed_labels(plugins, spec, episode.arrays, 11))


def test_a_keypoints_teacher_labels_an_image_student(teacher) -> None:
    from polx.dagger.collect import collect
    from polx.dagger.teacher import load_checkpoint_spec

    plugins, config, adapter, student = _student(IMAGE)
    spec = load_checkpoint_spec(plugins, teacher, adapter, "pusht")
    assert set(spec.obs_meta) == {"keypoints"} and set(adapter.shape_meta["obs"]) == {"image", "agent_pos"}
    (episode,) = collect(plugins, config, adapter, student, [7], beta=0.0, max_steps=10, threshold=0.1, progress=False, teacher=spec)
    assert episode.arrays["img"].shape == (episode.steps, 32, 32, 3) and episode.arrays["teacher_keypoints"].shape == (episode.steps, 20)
    np.testing.assert_array_equal(episode.arrays["action"], _replayed_labels(plugins, spec, episode.arrays, 7))
    # the student drove (beta 0): its image of step t shows the pusher where the teacher's keypoints say it is
    agent = episode.arrays["teacher_keypoints"][:, 18:]
    np.testing.assert_allclose(agent, episode.arrays["state"][:, :2], atol=1e-4)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
@example(seed=13)  # the tiny teacher's best reward comes late here (most of its unrolls peak at the first step)
def test_a_trimmed_unroll_is_the_whole_unroll_up_to_its_first_best_reward(teacher, seed) -> None:
    from polx.dagger.collect import collect_unrolls
    from polx.dagger.teacher import load_checkpoint_spec

    plugins, config, adapter, _ = _student(["env.obs_type=keypoints"])
    spec = load_checkpoint_spec(plugins, teacher, adapter, "pusht")
    early = load_checkpoint_spec(plugins, sorted((teacher / "checkpoints").glob("epoch=*step=0000002*.ckpt"))[0], adapter, "pusht", what="source")
    kwargs = dict(max_steps=40, threshold=0.1, progress=False)
    whole = collect_unrolls(plugins, config, adapter, [spec, early], spec, [[seed], [seed + 1]], **kwargs)
    trimmed = collect_unrolls(plugins, config, adapter, [spec, early], spec, [[seed], [seed + 1]], trim="peak", **kwargs)
    for full, cut in zip(whole, trimmed):
        np.testing.assert_array_equal(full.rewards, cut.rewards)  # the same episode, seeded alike
        keep = int(np.argmax(full.rewards)) + 1
        assert cut.steps == keep and full.steps == len(full.rewards)
        assert cut.rewards[: keep - 1].max(initial=-np.inf) < cut.rewards[keep - 1] == cut.max_reward  # the first step at the best
        for key, value in full.arrays.items():
            np.testing.assert_array_equal(cut.arrays[key], value[:keep])
        assert cut.disagreements <= full.disagreements and cut.success == full.success


def _dagger(teacher: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["dagger", "--head", "imf_attnres", "--env", "pusht", "--teacher", str(teacher), "--rounds", "1", "--episodes", "2",
            "--run-dir", str(run_dir), *TINY_HEAD, *TINY_RUN, "train.max_steps=4", "train.checkpoint_every=2",
            "dagger.steps_per_round=4", "dagger.max_steps=10", "dagger.phase1=unrolls", "dagger.phase1_unrolls=2", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def phase1_run(teacher, tmp_path_factory) -> Path:
    """An image student, Phase I from the teacher and two of its intermediate checkpoints, one round."""
    ckpts = sorted((teacher / "checkpoints").glob("epoch=*step=000000[24]*.ckpt"))
    assert len(ckpts) == 2
    run_dir = tmp_path_factory.mktemp("phase1") / "run"
    argv = _dagger(teacher, run_dir, *IMAGE, f"dagger.phase1_checkpoints=[{ckpts[0]}, {ckpts[1]}]", "dagger.round_warmup_steps=2", "dagger.normalizer=refit")
    result = CliRunner().invoke(cli.main, argv)
    assert result.exit_code == 0, result.output
    (run_dir.parent / "output.txt").write_text(result.output)
    return run_dir


def test_phase1_stores_unrolls_from_each_source_labelled_by_the_final_teacher(teacher, phase1_run) -> None:
    from polx.dagger.teacher import load_checkpoint_spec
    from polx_envs.pusht.env import PushTEnv

    plugins = _installed()
    store = ReplayBuffer.open(phase1_run / "data" / "phase1.zarr")
    data, ends = store.load(), store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    assert [int(data["dagger_source"][lo, 0]) for lo in starts] == [0, 0, 1, 1, 2, 2]
    figures = json.loads((phase1_run / "data" / "phase1.json").read_text())
    assert [s["step"] for s in figures["sources"]] == [6, 2, 4] and figures["phase1_steps"] == store.n_steps
    _, _, adapter, _ = _student(IMAGE)
    spec = load_checkpoint_spec(plugins, teacher, adapter, "pusht")
    for k, (lo, hi) in enumerate(zip(starts, ends)):
        seed = 300_000 + k  # dagger.phase1_seed, source s, unroll i: phase1_seed + s * phase1_unrolls + i
        env = PushTEnv(obs_type="keypoints")
        env.reset(seed=seed)
        assert np.allclose(data["state"][lo], env.sim.state())
        arrays = {key: value[lo:hi] for key, value in data.items()}
        np.testing.assert_array_equal(arrays["action"], _replayed_labels(plugins, spec, arrays, seed))
    table = json.loads((phase1_run / "summary.json").read_text())["table"]
    assert table[0]["dataset_steps"] == store.n_steps and table[0]["label_ms_per_step"] > 0
    rollouts = ReplayBuffer.open(phase1_run / "data" / "rollouts_001.zarr")
    assert rollouts.n_episodes == 2 and "teacher_keypoints" in rollouts.keys()


def test_a_round_refits_the_normaliser_and_restarts_its_schedule(phase1_run) -> None:
    from polx.base.checkpoint import LATEST, load_checkpoint
    from polx.runs import read_run_config
    from polx.train.data import load_training_data
    from polx.train.schedule import lr_at

    plugins = _installed()
    stage = phase1_run / "stages" / "round_001"
    from polx.runs import config_from_saved

    config = config_from_saved(plugins, read_run_config(stage), [])
    assert (config.train.schedule_start, config.train.max_steps, config.train.warmup_steps) == (4, 8, 2)
    lrs = {r["global_step"]: r["lr"] for r in map(json.loads, (stage / "logs.json.txt").read_text().splitlines()) if "lr" in r}
    for step, lr in lrs.items():  # logged after the step: optimizer step index step - 1
        if step > 4:
            expected = lr_at(step - 1 - 4, lr=config.train.lr, min_lr=config.train.min_lr, warmup_steps=2, max_steps=4)
            assert lr == pytest.approx(expected, rel=1e-6), step
    data = load_training_data(phase1_run / "data" / "round_001.zarr", plugins.build_env(config), config, plugins.registry)
    fitted = data.normalizer.state_dict()
    state = load_checkpoint(stage / "checkpoints" / LATEST)
    for weights in (state["model"], state["ema"]["model"]):
        for key, value in fitted.items():
            assert torch.equal(weights[f"normalizer.{key}"], value), key
    phase1 = load_checkpoint(phase1_run / "stages" / "round_000" / "checkpoints" / LATEST)["model"]
    assert any(not torch.equal(phase1[f"normalizer.{k}"], v) for k, v in fitted.items())  # the round's data moved the limits
    # the round starts from a checkpoint saved with the round's own config, so continuing it on the
    # round's data is not reported as a resume on moved data
    assert "warning: resuming" not in (phase1_run.parent / "output.txt").read_text()


# ---------------------------------------------------------------------------------------------
# bad teachers: exit 2, a message naming the problem, nothing written


def test_a_file_that_is_not_a_polx_checkpoint_is_refused(teacher, tmp_path) -> None:
    bogus = tmp_path / "model.ckpt"
    torch.save({"weights": torch.zeros(3)}, bogus)
    _refused(_dagger(bogus, tmp_path / "run"), tmp_path, ["--teacher", "model.ckpt", "is not a polx checkpoint"])
    _refused(_dagger(tmp_path / "nowhere", tmp_path / "run"), tmp_path, ["--teacher", "nowhere", "does not exist"])


def test_a_teacher_whose_actions_do_not_fit_the_env_is_refused(teacher, tmp_path, monkeypatch) -> None:
    import toy_plugin

    plugins = load_plugins(entry_points=list(metadata.entry_points(group="polx")), extra=[("toy", toy_plugin)])
    monkeypatch.setattr(cli, "_plugins", lambda **_: plugins)
    toy_run = tmp_path / "toy"
    result = CliRunner().invoke(cli.main, ["train", "--head", "toy_mlp", "--env", "toy_reach", "--run-dir", str(toy_run), "env.action_pad=1",
                                           f"env.cache_dir={tmp_path / 'cache'}", "train.max_steps=2", "train.progress=false", "eval.n_test=1",
                                           "eval.n_train=0", "eval.max_steps=4", "train.val_every=0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    _refused(_dagger(toy_run, tmp_path / "run"), tmp_path, ["cannot teach here", "env 'toy_reach'", "shape (3,)", "shape (2,)"])


def test_an_env_that_cannot_show_the_teacher_its_observation_is_named(tmp_path, monkeypatch) -> None:
    """toy_reach has no observe(): a teacher that observes as the student does is taken, one that
    observes differently (no camera, for a student with one) is refused naming the capability."""
    import toy_plugin
    from polx.dagger.teacher import load_checkpoint_spec
    from polx.errors import UserInputError
    from polx.runs import build_env_adapter

    plugins = load_plugins(entry_points=[], extra=[("toy", toy_plugin)])
    monkeypatch.setattr(cli, "_plugins", lambda **_: plugins)
    run = tmp_path / "toy"
    result = CliRunner().invoke(cli.main, ["train", "--head", "toy_mlp", "--env", "toy_reach", "--run-dir", str(run), f"env.cache_dir={tmp_path}",
                                           "train.max_steps=2", "train.progress=false", "eval.n_test=1", "eval.n_train=0", "eval.max_steps=4",
                                           "train.val_every=0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    same = build_env_adapter(plugins, "toy_reach", [f"env.cache_dir={tmp_path}"])
    assert load_checkpoint_spec(plugins, run, same, "toy_reach").obs_meta == same.shape_meta["obs"]
    with_camera = build_env_adapter(plugins, "toy_reach", ["env.image=true", f"env.cache_dir={tmp_path}"])
    with pytest.raises(UserInputError, match=r"env 'toy_reach' cannot give a teacher its own observation \(its adapter has no observe"):
        load_checkpoint_spec(plugins, run, with_camera, "toy_reach")


def test_chunk_labels_store_the_teachers_whole_chunk_and_the_student_imitates_it(teacher, tmp_path) -> None:
    """dagger.label=chunk: every stored step carries the teacher's predicted chunk there (replayed
    independently), whose entry n_obs_steps - 1 is the step's label; Phase I and the round train on
    the chunks as targets."""
    from polx.dagger.teacher import load_checkpoint_spec
    from polx.train.data import load_training_data

    run = tmp_path / "run"
    result = CliRunner().invoke(cli.main, _dagger(teacher, run, "env.obs_type=keypoints", "dagger.label=chunk", "dagger.unroll_trim=peak"))
    assert result.exit_code == 0, result.output
    plugins = _installed()
    _, config, adapter, _ = _student(["env.obs_type=keypoints"])
    spec = load_checkpoint_spec(plugins, teacher, adapter, "pusht")
    n_obs = spec.config.policy.n_obs_steps
    for name in ("phase1.zarr", "rollouts_001.zarr", "round_001.zarr"):
        store = ReplayBuffer.open(run / "data" / name)
        data, ends = store.load(), store.episode_ends
        assert data["action_chunk"].shape == (store.n_steps, spec.config.policy.horizon, 2), name
        np.testing.assert_array_equal(data["action_chunk"][:, n_obs - 1], data["action"])
        if name == "round_001.zarr":
            continue  # its rows are the other two stores' (round 1's without the teacher's observations)
        for k, (lo, hi) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends)):
            seed = 300_000 + k if name == "phase1.zarr" else 200_000 + k
            arrays = {key: value[lo:hi] for key, value in data.items()}
            np.testing.assert_array_equal(arrays["action_chunk"], _replayed_labels(plugins, spec, arrays, seed, chunks=True))
    training = load_training_data(run / "data" / "round_001.zarr", adapter, config_from_saved(plugins, read_run_config(run / "stages" / "round_001"), []), plugins.registry)
    assert training.train.action_chunks is not None
    # dagger.normalizer=keep (the default): the round trains with Phase I's normaliser, though its data would refit to other limits
    from polx.base.checkpoint import LATEST, load_checkpoint

    kept = {k: v for k, v in load_checkpoint(run / "stages" / "round_001" / "checkpoints" / LATEST)["model"].items() if k.startswith("normalizer.")}
    phase1 = load_checkpoint(run / "stages" / "round_000" / "checkpoints" / LATEST)["model"]
    assert kept and all(torch.equal(value, phase1[key]) for key, value in kept.items())
    assert any(not torch.equal(kept[f"normalizer.{k}"], v) for k, v in training.normalizer.state_dict().items())


def test_chunk_labels_from_a_starting_dataset_give_its_steps_their_own_demonstrated_future(teacher, tmp_path) -> None:
    """dagger.phase1=dataset with dagger.label=chunk: the aggregated store gives each starting step the
    chunk cut from its own episode's actions, and each rolled-out step the teacher's chunk there."""
    from polx.data.dataset import chunks_from_actions

    run, demos = tmp_path / "run", ReplayBuffer.open(teacher.parent / "demos.zarr")
    argv = _dagger(teacher, run, "env.obs_type=keypoints", "dagger.label=chunk", "dagger.phase1=dataset", "--dataset", str(teacher.parent / "demos.zarr"))
    result = CliRunner().invoke(cli.main, argv)
    assert result.exit_code == 0, result.output
    store = ReplayBuffer.open(run / "data" / "round_001.zarr")
    data = store.load()
    start = int(demos.episode_ends[-1])
    assert (data["dagger_round"][:start] == 0).all() and (data["dagger_round"][start:] == 1).all()
    policy = read_run_config(run / "stages" / "round_001")["policy"]
    want = chunks_from_actions(demos.load(["action"])["action"], demos.episode_ends, horizon=policy["horizon"], n_obs_steps=policy["n_obs_steps"])
    np.testing.assert_array_equal(data["action_chunk"][:start], want)
    np.testing.assert_array_equal(data["action_chunk"][start:, policy["n_obs_steps"] - 1], data["action"][start:])  # the teacher's chunk holds its label


def test_chunk_labels_need_a_checkpoint_teacher_and_the_students_windows(teacher, tmp_path) -> None:
    base = ["dagger", "--head", "imf_attnres", "--env", "pusht", "--rounds", "1", "--episodes", "1", "--run-dir", str(tmp_path / "run")]
    _refused([*base, "dagger.label=chunk"], tmp_path, ["dagger.label=chunk", "needs a checkpoint teacher"])
    _refused(_dagger(teacher, tmp_path / "run", "dagger.label=chunk", "policy.horizon=12"), tmp_path,
             ["dagger.label=chunk", "the teacher's policy.horizon is 16 and the student's 12"])  # fmt: skip


def test_label_auto_chunks_where_the_teachers_windows_match_and_steps_otherwise(teacher, tmp_path) -> None:
    """The default dagger.label=auto: chunk for a checkpoint teacher with the student's horizon and
    n_obs_steps, step for one whose windows differ and for the scripted expert; the plan (and so
    dagger.yaml, which --resume reads) records the choice, not 'auto'."""
    from polx.dagger import prepare_dagger

    def plan(teacher_arg, *extra):
        overrides = (*TINY_HEAD, *TINY_RUN, "env.obs_type=keypoints", *extra)
        return prepare_dagger(_installed(), head="imf_attnres", env="pusht", rounds=1, episodes=1, teacher=teacher_arg,
                              run_dir=tmp_path / "run", overrides=overrides)  # fmt: skip

    matching, other_horizon, expert = plan(str(teacher)), plan(str(teacher), "policy.horizon=12"), plan(None)
    assert [p.dagger.label for p in (matching, other_horizon, expert)] == ["chunk", "step", "step"]
    assert [p.request["dagger"]["label"] for p in (matching, other_horizon, expert)] == ["chunk", "step", "step"]
    assert "action_chunk" in matching.layout and "action_chunk" not in other_horizon.layout
    assert not (tmp_path / "run").exists()  # preparing writes nothing


def test_phase1_unrolls_need_a_checkpoint_teacher(tmp_path) -> None:
    argv = ["dagger", "--head", "imf_attnres", "--env", "pusht", "--rounds", "1", "--episodes", "1", "--run-dir", str(tmp_path / "run"),
            "dagger.phase1=unrolls"]  # fmt: skip
    _refused(argv, tmp_path, ["dagger.phase1=unrolls needs a policy teacher", "--teacher CKPT"])


# ---------------------------------------------------------------------------------------------
# --resume after a kill


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("where", ["phase1_training", "round_training"])
def test_a_run_killed_in_phase1_or_in_a_round_resumes_to_the_same_data(teacher, tmp_path, where) -> None:
    from test_dagger import _kill_when, _mid_training

    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    argv = lambda d: [*_dagger(teacher, d, "env.obs_type=keypoints", "dagger.phase1_checkpoints=[all]")]  # noqa: E731
    assert CliRunner().invoke(cli.main, argv(reference)).exit_code == 0
    _kill_when(argv(run_dir), _mid_training(run_dir / "stages" / ("round_000" if where == "phase1_training" else "round_001")))
    assert not (run_dir / "summary.json").exists()
    result = CliRunner().invoke(cli.main, ["dagger", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    for name in ("phase1.zarr", "round_001.zarr", "rollouts_001.zarr"):
        ours, theirs = (ReplayBuffer.open(d / "data" / name) for d in (run_dir, reference))
        assert np.array_equal(ours.episode_ends, theirs.episode_ends), name
        for key in theirs.keys():
            assert np.array_equal(ours.load([key])[key], theirs.load([key])[key]), (name, key)
