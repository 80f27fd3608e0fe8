"""The PushT expert as a closed-loop teacher: it answers for the state it is shown, whatever came before."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from polx_envs.pusht.adapter import PushTAdapter
from polx_envs.pusht.config import PushTConfig
from polx_envs.pusht.demos import run_demo
from polx_envs.pusht.env import PushTEnv
from polx_envs.pusht.expert import PushTExpert, pose_error


def _env_at(snapshot: tuple) -> PushTEnv:
    env = PushTEnv(obs_type="state")
    env.reset(seed=0)
    env.sim.restore(snapshot)
    return env


@settings(max_examples=6, deadline=None)
@given(
    seed=st.sampled_from([100048, 100045, 100003]),
    steps=st.integers(3, 25),
    shift=st.tuples(st.floats(5, 30), st.floats(5, 30), st.sampled_from([-1, 1]), st.sampled_from([-1, 1])),
    turn=st.floats(-0.6, 0.6),
)
def test_a_perturbed_state_gets_the_fresh_answer_and_progress(seed, steps, shift, turn):
    env = PushTEnv(obs_type="state")
    env.reset(seed=seed)
    expert = PushTExpert()
    for _ in range(steps):  # mid-plan: the expert has a queue and a prediction
        env.step(expert.act(env))
    agent, agent_vel, block, angle, block_vel, spin = env.sim.snapshot()
    # the block moved well beyond the plan's tolerance (3 px): an unperturbed state may keep its plan
    perturbed = (agent, agent_vel, (block[0] + shift[0] * shift[2], block[1] + shift[1] * shift[3]), angle + turn, block_vel, spin)
    env.sim.restore(perturbed)
    # the action for this state does not depend on the plan made before the perturbation
    assert np.array_equal(expert.act(env), PushTExpert().act(_env_at(perturbed)))
    env.sim.restore(perturbed)
    before = float(pose_error(env.sim.block_pose))
    expert.reset()
    best = before
    for _ in range(80):
        _, _, terminated, _, _ = env.step(expert.act(env))
        best = min(best, float(pose_error(env.sim.block_pose)))
        if terminated:
            break
    assert terminated or best < before - 5.0, f"pose error {before:.1f} -> at best {best:.1f} px"


def test_along_its_own_trajectory_it_keeps_its_plan():
    env = PushTEnv(obs_type="state")
    env.reset(seed=100048)
    expert = PushTExpert()
    plans = 0
    plan = expert._plan

    def counted(sim):
        nonlocal plans
        plans += 1
        return plan(sim)

    expert._plan = counted
    for steps in range(1, 301):
        _, _, terminated, _, _ = env.step(expert.act(env))
        if terminated:
            break
    assert terminated and plans <= steps / 4, f"{plans} plans in {steps} steps"


def test_record_is_a_row_of_the_demo_layout():
    demo = run_demo(100048, max_steps=40)["data"]
    env = PushTEnv(obs_type="state")
    env.reset(seed=100048)
    expert = PushTAdapter(PushTConfig(obs_type="image")).make_expert()
    for t in range(len(demo["action"])):  # every row along the demo, contacts included (the pusher reaches the T)
        row = expert.record(env)
        assert sorted(row) == ["img", "keypoint", "n_contacts", "state"]
        for key in row:
            assert np.allclose(row[key], demo[key][t]), (key, t)
        env.step(demo["action"][t])
    assert demo["n_contacts"].max() > 0
    assert "img" not in PushTAdapter(PushTConfig(obs_type="keypoints")).make_expert().record(env)



def test_expert_travel_speed_sets_how_far_its_targets_move_per_step(tmp_path):
    """``env.expert_travel_speed`` is what the expert's targets move by per step between pushes,
    in its demos and in the expert ``polx dagger`` asks for labels: at 15 no step of its own
    demos moves farther (seeds 0-40 were checked once: at most 15.0 px), at 30 travel does."""
    jumps = {speed: np.concatenate([np.linalg.norm(np.diff(run_demo(seed, max_steps=120, travel_speed=speed)["data"]["action"], axis=0), axis=1)
                                    for seed in (0, 1, 2)]) for speed in (15.0, 30.0)}  # fmt: skip
    assert jumps[15.0].max() <= 15.5 and (jumps[30.0] > 20).mean() > 0.05
    assert PushTAdapter(PushTConfig(obs_type="keypoints", expert_travel_speed=15.0)).make_expert().travel_speed == 15.0
    assert PushTAdapter(PushTConfig(obs_type="keypoints")).make_expert().travel_speed == 30.0  # the default keeps its demos
    from polx.data.replay_buffer import ReplayBuffer

    PushTAdapter(PushTConfig(obs_type="keypoints", expert_travel_speed=15.0)).generate_demos(tmp_path / "d.zarr", 1, progress=False)
    written = ReplayBuffer.open(tmp_path / "d.zarr").load(["action"])["action"]
    assert np.linalg.norm(np.diff(written, axis=0), axis=1).max() <= 15.5
