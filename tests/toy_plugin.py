"""A tiny polx plugin for the core's tests: head ``toy_mlp``, objective ``toy_flow``, env ``toy_reach``
and logger ``toy_record``, registered through the same hooks as any installed plugin::

    plugins = load_plugins(extra=[("toy", toy_plugin)])

``toy_reach`` is a 2-D point that moves at most ``max_speed`` per step towards the commanded
target; the expert commands the goal. Observations: ``pos`` and ``goal`` (low-dim) and, with
``env.image=true``, a 16x16 ``image`` camera, so the ResNet path is exercised too.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from attrs import define, field
from PIL import Image, ImageDraw
from torch import nn

from polx import hookimpl
from polx.config import positive
from polx.policy.valid import batch_valid, masked_mean

# ---------------------------------------------------------------------------------------------
# head


@define(frozen=True, kw_only=True)
class ToyMLPConfig:
    hidden: int = field(default=32, validator=positive)


class ToyMLP(nn.Module):
    """Velocity of the noisy chunk: (x (B, T, A), t (B,), cond (B, To, D)) -> (B, T, A)."""

    def __init__(self, config: ToyMLPConfig, spec):
        super().__init__()
        self.spec = spec
        chunk = spec.horizon * spec.action_dim
        self.net = nn.Sequential(
            nn.Linear(chunk + 1 + spec.n_obs_steps * spec.cond_dim, config.hidden),
            nn.Mish(),
            nn.Linear(config.hidden, chunk),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        flat = torch.cat([x.flatten(1), t[:, None], cond.flatten(1)], dim=1)
        return self.net(flat).view_as(x)

    def get_optim_groups(self, weight_decay: float) -> list[dict]:
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------
# objective: rectified flow, Euler sampling


@define(frozen=True, kw_only=True)
class ToyFlowConfig:
    num_steps: int = field(default=2, validator=positive)
    nan_at_call: int | None = None  # training-mode call that returns NaN (tests the trainer's guard)


class ToyFlow:
    name = "toy_flow"

    def __init__(self, config: ToyFlowConfig):
        self.config = config
        self.default_num_steps = config.num_steps
        self.train_calls = 0

    def compute_loss(self, head: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        valid = batch_valid(batch)  # (B, T, A) bool
        x1 = torch.where(valid, batch["action"], 0.0)  # (B, T, A); the MLP sees the whole chunk
        noise = torch.randn_like(x1)
        t = torch.rand(x1.shape[0], device=x1.device)
        xt = (1 - t[:, None, None]) * noise + t[:, None, None] * x1
        err = (head(xt, t, batch["cond"]) - (x1 - noise)) ** 2  # (B, T, A)
        loss = masked_mean(err, valid)
        if head.training:
            self.train_calls += 1
            if self.train_calls == self.config.nan_at_call:
                loss = loss * float("nan")
        return loss, {"flow_mse": float(loss.detach())}

    def sample(self, head: nn.Module, cond: torch.Tensor, num_steps: int | None, generator: torch.Generator | None) -> torch.Tensor:
        steps = num_steps or self.default_num_steps
        spec = head.spec
        x = torch.randn((cond.shape[0], spec.horizon, spec.action_dim), generator=generator, device=cond.device)
        for i in range(steps):
            t = torch.full((cond.shape[0],), i / steps, device=cond.device)
            x = x + head(x, t, cond) / steps
        return x


# ---------------------------------------------------------------------------------------------
# env


@define(frozen=True, kw_only=True)
class ToyReachConfig:
    n_demos: int = field(default=12, validator=positive)
    max_speed: float = 0.1
    success_radius: float = 0.1
    image: bool = False
    action_groups: bool = False  # declare the action's two coordinates as groups x and y (action layouts)
    action_pad: int = 0  # extra action dimensions the env ignores (an action shape other than another env's)
    cache_dir: str | None = None  # None: a directory under the system temp dir


class ToyReachEnv(gym.Env):
    def __init__(self, config: ToyReachConfig):
        self.config = config
        spaces = {
            "pos": gym.spaces.Box(-1, 1, (2,), np.float32),
            "goal": gym.spaces.Box(-1, 1, (2,), np.float32),
        }
        if config.image:
            spaces["image"] = gym.spaces.Box(0, 1, (3, 16, 16), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1, 1, (2 + config.action_pad,), np.float32)
        self.path: list[np.ndarray] = []

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2)
        self.goal = self.np_random.uniform(-0.8, 0.8, 2)
        self.path = [self.pos.copy()]
        return self._obs(), {}

    def step(self, action):
        delta = np.clip(np.asarray(action, dtype=np.float64)[:2], -1, 1) - self.pos
        norm = np.linalg.norm(delta)
        if norm > self.config.max_speed:
            delta *= self.config.max_speed / norm
        self.pos = self.pos + delta
        self.path.append(self.pos.copy())
        dist = float(np.linalg.norm(self.pos - self.goal))
        success = dist < self.config.success_radius
        return self._obs(), max(0.0, 1.0 - dist), success, False, {"is_success": success}

    def _obs(self) -> dict:
        obs = {"pos": self.pos.astype(np.float32), "goal": self.goal.astype(np.float32)}
        if self.config.image:
            obs["image"] = self.camera().transpose(2, 0, 1).astype(np.float32) / 255.0
        return obs

    def camera(self) -> np.ndarray:
        """(16, 16, 3) uint8: red pixel at the point, green at the goal."""
        img = np.zeros((16, 16, 3), np.uint8)
        for xy, channel in ((self.pos, 0), (self.goal, 1)):
            col, row = np.clip(((np.asarray(xy) + 1) / 2 * 15).round().astype(int), 0, 15)
            img[row, col, channel] = 255
        return img


class ToyReachAdapter:
    name = "toy_reach"

    def __init__(self, config: ToyReachConfig):
        self.config = config
        obs = {"pos": {"shape": [2], "type": "low_dim"}, "goal": {"shape": [2], "type": "low_dim"}}
        if config.image:
            obs = {"image": {"shape": [3, 16, 16], "type": "rgb"}, **obs}
        self.shape_meta = {"obs": obs, "action": {"shape": [2 + config.action_pad]}}
        if config.action_groups:
            self.shape_meta["action"]["groups"] = {"x": [0, 1], "y": [1, 2]}

    def make_env(self) -> ToyReachEnv:
        return ToyReachEnv(self.config)

    def dataset_obs(self, data: dict) -> dict:
        out = {"pos": data["pos"].astype(np.float32), "goal": data["goal"].astype(np.float32), "action": data["action"].astype(np.float32)}
        if self.config.image:
            out["image"] = data["img"]  # (N, 16, 16, 3) uint8
        return out

    def default_dataset(self, progress: bool = True) -> Path:
        root = Path(self.config.cache_dir) if self.config.cache_dir else Path(tempfile.gettempdir()) / "polx-toy"
        path = root / f"toy_reach_{self.config.n_demos}{'_img' if self.config.image else ''}{f'_pad{self.config.action_pad}' if self.config.action_pad else ''}.zarr"
        if not path.exists():
            self.generate_demos(path, self.config.n_demos)
        return path

    def generate_demos(self, out, episodes, seed=0, workers=1, keep_all=False, progress=True) -> dict:
        from polx.data.replay_buffer import ReplayBuffer

        env = self.make_env()
        rng = np.random.default_rng(seed)
        with ReplayBuffer.writer(out) as rb:
            for i in range(episodes):
                obs, _ = env.reset(seed=seed + i)
                rows: dict[str, list] = {"pos": [], "goal": [], "action": [], "img": []}
                for _ in range(40):
                    action = (env.goal + rng.normal(0, 0.02, 2)).astype(np.float32)
                    rows["pos"].append(obs["pos"])
                    rows["goal"].append(obs["goal"])
                    rows["img"].append(env.camera())
                    rows["action"].append(np.concatenate([action, np.zeros(self.config.action_pad, np.float32)]))
                    obs, _, done, _, _ = env.step(rows["action"][-1])
                    if done:
                        break
                rb.add_episode({k: np.stack(v) for k, v in rows.items()})
        return {"episodes": episodes, "path": str(out)}


# ---------------------------------------------------------------------------------------------
# logger: every record as one JSON line, so tests read what the loggers received


@define(frozen=True, kw_only=True)
class ToyRecordConfig:
    enabled: bool = True


class ToyRecord:
    def __init__(self, config: ToyRecordConfig, run):
        self.file = open(Path(run.dir) / "toy_record.jsonl", "a")

    def log(self, step, metrics, images):
        self.file.write(json.dumps({"step": step, "metrics": dict(metrics), "images": dict(images)}) + "\n")
        self.file.flush()

    def close(self):
        self.file.close()


@hookimpl
def register_components(register):
    register("head", "toy_mlp", ToyMLPConfig, ToyMLP, help="two-layer MLP head", default_objective="toy_flow", objectives=("toy_flow",))
    register("objective", "toy_flow", ToyFlowConfig, ToyFlow, help="rectified flow, Euler sampling")
    register("env", "toy_reach", ToyReachConfig, ToyReachAdapter, help="2-D point reaching a goal")
    register("logger", "toy_record", ToyRecordConfig, ToyRecord, help="JSON lines of every record")


@hookimpl
def render_trajectory(env, episode, path):
    env = getattr(env, "unwrapped", env)
    if not isinstance(env, ToyReachEnv):
        return None
    image = Image.new("RGB", (64, 64), "white")
    draw = ImageDraw.Draw(image)
    points = [tuple(((p + 1) / 2 * 63).tolist()) for p in env.path]
    draw.line(points, fill="blue", width=1)
    gx, gy = ((env.goal + 1) / 2 * 63).tolist()
    draw.ellipse([gx - 2, gy - 2, gx + 2, gy + 2], outline="green")
    image.save(path)
    return path


# ---------------------------------------------------------------------------------------------
# helpers for the tests


def toy_plugins():
    """This plugin alone, beside core (whose built-in JSON log writes ``logs.json.txt``)."""
    from polx.plugins import load_plugins

    return load_plugins(entry_points=[], extra=[("toy", sys.modules[__name__])])


def train_head_on_toy(plugins, tmp_path, run_dir, head: str, *extra: str, argv=("test",)):
    """A few steps of ``head`` on ``toy_reach`` into ``run_dir``, no rollouts; returns the run directory."""
    from polx.runs import prepare_training
    from polx.train.trainer import run_training

    overrides = toy_overrides(tmp_path / "cache", "train.max_steps=3", "train.val_every=0", "eval.rollout_every=0", "eval.at_end=false", *extra)
    plan = prepare_training(plugins, head=head, env="toy_reach", run_dir=run_dir, overrides=overrides, argv=list(argv))
    return run_training(plan)


def toy_overrides(cache_dir, *extra: str) -> list[str]:
    """A run of a few seconds: tiny windows, few steps, short rollouts."""
    return [
        f"env.cache_dir={cache_dir}",
        "train.max_steps=12",
        "train.batch_size=8",
        "train.warmup_steps=3",
        "train.log_every=2",
        "train.val_every=6",
        "train.val_batches=2",
        "train.checkpoint_every=6",
        "train.topk=2",
        "train.progress=false",
        "policy.horizon=8",
        "policy.n_obs_steps=2",
        "policy.n_action_steps=4",
        "data.val_ratio=0.2",
        "eval.rollout_every=6",
        "eval.n_test=3",
        "eval.n_train=1",
        "eval.n_vis=2",
        "eval.max_steps=16",
        *extra,
    ]


def train_toy(plugins, out, cache_dir, *extra: str, resume_dir=None, loggers=None):
    """Run ``polx train`` in-process on the toy; returns the run directory."""
    from polx.runs import prepare_training
    from polx.train.trainer import run_training

    if loggers is None:
        loggers = ["toy_record"]
    overrides = list(extra) if resume_dir is not None else toy_overrides(cache_dir, *extra)
    plan = prepare_training(
        plugins,
        head=None if resume_dir else "toy_mlp",
        env=None if resume_dir else "toy_reach",
        loggers=() if resume_dir else loggers,  # a resumed run keeps its loggers and directory
        out=None if resume_dir else out,
        resume_dir=resume_dir,
        overrides=overrides,
        argv=["polx", "train", "(test)"],
    )
    return run_training(plan)


def read_records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "toy_record.jsonl").read_text().splitlines()]


def installed_env(root: Path) -> dict:
    """Environment variables under which this plugin is an installed distribution (entry point
    ``toy``) and polx's own plugins are disabled: for subprocesses (``polx train``, sweeps, Ray workers)."""
    import os

    info = Path(root) / "site" / "polx_toy-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: polx-toy\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[polx]\ntoy = toy_plugin\n")
    path = os.pathsep.join([str(Path(root) / "site"), str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path, "POLX_DISABLE_PLUGINS": "envs,imf_attnres,ddpm_transformer"}
