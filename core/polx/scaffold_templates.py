"""File templates of ``polx plugin new`` (``string.Template``: ``$name``, ``$Name``, ``$package``, ``$dist``).

Each kind's files make a working component; see ``polx.scaffold`` for the layout.
"""

PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "polx plugin: $kind $name"
requires-python = ">=3.10"
dependencies = ["polx"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points.polx]
$name = "$package.plugin"

[tool.setuptools.packages.find]
include = ["$package*"]
'''

INIT = '''
"""polx plugin $dist: $kind $name."""
'''

_README = '''
# $dist

A polx $kind, `$name`. Install it next to polx and check that polx sees it:

```bash
pip install -e .
polx plugins list
python -m pytest tests
```

$usage

The contracts a $kind must keep are in polx's `docs/plugin_hooks.md`.
'''

# ---------------------------------------------------------------------------------------------
# head

HEAD_CONFIG = '''
"""Config of head $name (loaded with the plugin: no torch import here)."""

from attrs import define, field

from polx.config import doc, positive


@define(frozen=True, kw_only=True)
class ${Name}Config:
    """Head $name: an MLP over the noised chunk, the step and the condition."""

    hidden: int = doc("width of the hidden layers", default=256, validator=positive)
    time_scale: float = doc("the step t is divided by this (ddpm's steps run to 100)", default=100.0, validator=positive)
'''

HEAD_PLUGIN = '''
"""Entry point of $dist: registers head $name (cheap: config classes only)."""

from polx import hookimpl
from $package.config import ${Name}Config


@hookimpl
def register_components(register):
    register(
        "head",
        "$name",
        ${Name}Config,
        "$package.head:build_head",
        help="MLP over the noised chunk, step and condition (answers forward(sample, t, cond))",
        default_objective="ddpm",
        objectives=("ddpm",),  # objectives whose head call this head answers (docs/plugin_hooks.md)
    )
'''

HEAD_MODULE = '''
"""Head $name: ``forward(sample (B, T, A), t (B,), cond (B, To, D)) -> (B, T, A)``.

This is the call the ``ddpm`` objective makes (``polx.components.DenoisingHead``): ``t`` holds
its integer steps, and the output is the predicted noise.
"""

import torch
from torch import nn


class ${Name}Head(nn.Module):
    def __init__(self, config, spec):
        super().__init__()
        self.config, self.spec = config, spec  # core and the objectives read spec.horizon, spec.action_dim
        chunk = spec.horizon * spec.action_dim
        self.net = nn.Sequential(
            nn.Linear(chunk + 1 + spec.n_obs_steps * spec.cond_dim, config.hidden),
            nn.Mish(),
            nn.Linear(config.hidden, config.hidden),
            nn.Mish(),
            nn.Linear(config.hidden, chunk),
        )

    def forward(self, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = t.to(sample.dtype)[:, None] / self.config.time_scale  # (B, 1)
        flat = torch.cat([sample.flatten(1), t, cond.flatten(1)], dim=1)
        return self.net(flat).view_as(sample)

    def get_optim_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups, each parameter in exactly one: weights decay, biases do not."""
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_head(config, spec) -> ${Name}Head:
    """The registered factory: ``factory(config, spec)``."""
    return ${Name}Head(config, spec)
'''

HEAD_TEST = '''
"""Head $name registers, answers the ddpm call with the right shapes, and trains a step."""

import pytest
import torch

from polx.components import ObsActionSpec
from polx.plugins import load_plugins
from $package import plugin
from $package.config import ${Name}Config
from polx.testing import check_head
from $package.head import build_head

SPEC = ObsActionSpec(action_dim=2, horizon=8, n_obs_steps=2, cond_dim=5)


def _plugins():
    """The installed plugins, with this one added when it is not installed (tests run from the source tree)."""
    plugins = load_plugins()
    if "$name" in plugins.registry.names("$kind"):
        return plugins
    return load_plugins(extra=[("$name", plugin)])


def test_registers():
    plugins = load_plugins(entry_points=[], extra=[("$name", plugin)])
    assert plugins.registry.get("head", "$name").default_objective == "ddpm"


def test_forward_shape_and_optim_groups():
    head = build_head(${Name}Config(hidden=16), SPEC)
    sample = torch.randn(3, SPEC.horizon, SPEC.action_dim)
    out = head(sample, torch.randint(0, 100, (3,)), torch.randn(3, SPEC.n_obs_steps, SPEC.cond_dim))
    assert out.shape == sample.shape
    grouped = [p for g in head.get_optim_groups(1e-3) for p in g["params"]]
    assert len(grouped) == len(list(head.parameters()))


def test_a_ddpm_step_when_the_objective_is_installed():
    plugins = load_plugins()
    if "ddpm" not in plugins.registry.names("objective"):
        pytest.skip("objective ddpm (polx-plugin-ddpm-transformer) is not installed")
    objective = plugins.registry.get("objective", "ddpm")
    objective = objective.build(objective.config_cls())
    head = build_head(${Name}Config(hidden=16), SPEC)
    batch = {"action": torch.randn(4, SPEC.horizon, SPEC.action_dim), "cond": torch.randn(4, SPEC.n_obs_steps, SPEC.cond_dim),
             "action_is_pad": torch.zeros(4, SPEC.horizon, dtype=torch.bool)}
    loss, _ = plugins.hook.compute_loss(objective=objective, head=head, batch=batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_keeps_the_polx_head_contract():
    """polx.testing: built through the hooks, a module with spec, forward and get_optim_groups, and a
    dry call with each installed objective it pairs with (finite loss, (batch, horizon, action_dim) sample)."""
    check_head(_plugins(), "$name", config={"hidden": 16})
'''

# ---------------------------------------------------------------------------------------------
# objective

OBJECTIVE_CONFIG = '''
"""Config of objective $name (loaded with the plugin: no torch import here)."""

from attrs import define, field

from polx.config import doc, positive


@define(frozen=True, kw_only=True)
class ${Name}Config:
    """Objective $name: rectified flow, Euler sampling."""

    num_steps: int = doc("Euler steps when sampling", default=10, validator=positive)
    time_scale: float = doc("the head receives t * time_scale (100: ddpm's step range)", default=100.0, validator=positive)
'''

OBJECTIVE_PLUGIN = '''
"""Entry point of $dist: registers objective $name (cheap: config classes only)."""

from polx import hookimpl
from $package.config import ${Name}Config


@hookimpl
def register_components(register):
    register(
        "objective",
        "$name",
        ${Name}Config,
        "$package.objective:build_objective",
        help="rectified flow on forward(sample, t, cond) heads; Euler sampling",
        heads=("ddpm_transformer",),  # heads known to answer forward(sample, t, cond); add yours
    )
'''

OBJECTIVE_MODULE = '''
"""Objective $name: rectified flow.

For a normalized chunk x, noise e and t ~ U(0, 1), ``z = (1 - t) x + t e`` and the head
regresses the velocity ``e - x`` through the call ``head(z, t * time_scale, cond)``
(``polx.components.DenoisingHead``). Sampling integrates from t = 1 to t = 0 in ``num_steps``.
"""

import torch

from polx.policy.valid import batch_valid, masked_mean


class ${Name}Objective:
    name = "$name"

    def __init__(self, config):
        self.config = config
        self.default_num_steps = config.num_steps

    def compute_loss(self, head, batch: dict):
        valid = batch_valid(batch)  # (B, T, A) bool: the entries that count
        x = torch.where(valid, batch["action"], 0.0)  # invalid entries zeroed before noising
        noise = torch.randn_like(x)
        t = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)  # (B,)
        z = (1 - t)[:, None, None] * x + t[:, None, None] * noise
        pred = head(z, t * self.config.time_scale, batch["cond"])
        loss = masked_mean((pred - (noise - x)) ** 2, valid)
        return loss, {"mse": float(loss.detach())}

    @torch.no_grad()
    def sample(self, head, cond: torch.Tensor, num_steps, generator):
        steps = self.default_num_steps if num_steps is None else num_steps
        shape = (cond.shape[0], head.spec.horizon, head.spec.action_dim)
        device = generator.device if generator is not None else cond.device
        z = torch.randn(shape, generator=generator, device=device, dtype=cond.dtype).to(cond.device)
        for i in range(steps):
            t = torch.full((shape[0],), 1.0 - i / steps, device=cond.device, dtype=cond.dtype)
            z = z - head(z, t * self.config.time_scale, cond) / steps
        return z


def build_objective(config) -> ${Name}Objective:
    """The registered factory: ``factory(config)``."""
    return ${Name}Objective(config)
'''

OBJECTIVE_TEST = '''
"""Objective $name registers, ignores entries that are not valid, and samples chunks."""

import pytest
import torch
from torch import nn

from polx.components import ObsActionSpec
from polx.plugins import load_plugins
from polx.policy.valid import valid_mask
from polx.testing import check_objective
from $package import plugin
from $package.config import ${Name}Config
from $package.objective import build_objective

SPEC = ObsActionSpec(action_dim=2, horizon=8, n_obs_steps=2, cond_dim=5)


def _plugins():
    """The installed plugins, with this one added when it is not installed (tests run from the source tree)."""
    plugins = load_plugins()
    if "$name" in plugins.registry.names("$kind"):
        return plugins
    return load_plugins(extra=[("$name", plugin)])


class TinyHead(nn.Module):
    """forward(sample, t, cond) -> (B, T, A)."""

    def __init__(self):
        super().__init__()
        self.spec = SPEC
        self.net = nn.Linear(SPEC.horizon * SPEC.action_dim + 1 + SPEC.n_obs_steps * SPEC.cond_dim, SPEC.horizon * SPEC.action_dim)

    def forward(self, sample, t, cond):
        return self.net(torch.cat([sample.flatten(1), t[:, None] / 100, cond.flatten(1)], 1)).view_as(sample)


def test_registers():
    plugins = load_plugins(entry_points=[], extra=[("$name", plugin)])
    assert plugins.registry.get("objective", "$name").plugin == "$name"


def test_entries_that_are_not_valid_never_change_the_loss():
    objective, head = build_objective(${Name}Config()), TinyHead()
    action, cond = torch.randn(3, SPEC.horizon, SPEC.action_dim), torch.randn(3, SPEC.n_obs_steps, SPEC.cond_dim)
    is_pad = torch.zeros(3, SPEC.horizon, dtype=torch.bool)
    is_pad[1:, 5:] = True

    def loss_of(a):
        torch.manual_seed(0)
        return objective.compute_loss(head, {"action": a, "cond": cond, "valid": valid_mask(a, is_pad)})[0]

    assert torch.isclose(loss_of(action), loss_of(torch.where(valid_mask(action, is_pad), action, 1e3)))


def test_sample_shape_and_reproducibility():
    objective, head = build_objective(${Name}Config(num_steps=3)), TinyHead()
    cond = torch.randn(2, SPEC.n_obs_steps, SPEC.cond_dim)
    a = objective.sample(head, cond, None, torch.Generator().manual_seed(1))
    b = objective.sample(head, cond, None, torch.Generator().manual_seed(1))
    assert a.shape == (2, SPEC.horizon, SPEC.action_dim) and torch.equal(a, b)


def test_keeps_the_polx_objective_contract():
    """polx.testing, with the shipped head it names: a dry call (finite loss, (batch, horizon,
    action_dim) sample) and the masking property, through the hooks training uses."""
    plugins = _plugins()
    if "ddpm_transformer" not in plugins.registry.names("head"):
        pytest.skip("head ddpm_transformer (polx-plugin-ddpm-transformer) is not installed")
    check_objective(plugins, "$name", head="ddpm_transformer", head_config={"n_emb": 16, "n_layer": 1, "n_head": 2})
'''

# ---------------------------------------------------------------------------------------------
# env

ENV_CONFIG = '''
"""Config of env $name (loaded with the plugin: no simulator import here)."""

from attrs import define, field

from polx.config import doc, positive


@define(frozen=True, kw_only=True)
class ${Name}Config:
    """Env $name: a 2-D point moving towards a commanded target, to reach a goal."""

    max_speed: float = doc("largest move per step", default=0.1, validator=positive)
    success_radius: float = doc("distance to the goal that counts as success", default=0.1, validator=positive)
    n_demos: int = doc("episodes in the default dataset (cached under POLX_CACHE_DIR or the user cache)", default=50, validator=positive)


#: config defaults this env needs when it is chosen (env preset, docs/plugin_hooks.md)
PRESET = {"eval": {"max_steps": 60}, "policy": {"horizon": 8, "n_obs_steps": 2, "n_action_steps": 4}}
'''

ENV_PLUGIN = '''
"""Entry point of $dist: registers env $name and draws its trajectories."""

from polx import hookimpl
from $package.config import PRESET, ${Name}Config


@hookimpl
def register_components(register):
    register("env", "$name", ${Name}Config, "$package.env:${Name}Adapter", help="2-D point reaching a goal", preset=PRESET)


@hookimpl
def render_trajectory(env, episode, path):
    from $package.env import ${Name}Env, draw

    if not isinstance(getattr(env, "unwrapped", env), ${Name}Env):
        return None  # another plugin's env
    return draw(env.unwrapped, path)
'''

ENV_MODULE = '''
"""Env $name: a point in [-1, 1]^2 moves at most ``max_speed`` per step towards the commanded
target. Reward is ``1 - distance`` to the goal, clipped at 0 (an episode scores its maximum);
``info["is_success"]`` once within ``success_radius``. Episodes depend only on their seed.
"""

import functools

import gymnasium as gym
import numpy as np

#: bump when the expert or the recorded arrays change, so a cached default dataset is made again
DATASET_VERSION = 1


class ${Name}Env(gym.Env):
    def __init__(self, config):
        self.config = config
        box = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({"pos": box, "goal": box})
        self.action_space = box
        self.path = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)  # everything below draws from self.np_random: deterministic per seed
        self.pos = self.np_random.uniform(-1, 1, 2)
        self.goal = self.np_random.uniform(-0.8, 0.8, 2)
        self.path = [self.pos.copy()]
        return self._obs(), {}

    def step(self, action):
        delta = np.clip(np.asarray(action, dtype=np.float64), -1, 1) - self.pos
        norm = np.linalg.norm(delta)
        if norm > self.config.max_speed:
            delta *= self.config.max_speed / norm
        self.pos = self.pos + delta
        self.path.append(self.pos.copy())
        dist = float(np.linalg.norm(self.pos - self.goal))
        success = dist < self.config.success_radius
        return self._obs(), max(0.0, 1.0 - dist), success, False, {"is_success": success}

    def _obs(self):
        return {"pos": self.pos.astype(np.float32), "goal": self.goal.astype(np.float32)}


class ${Name}Adapter:
    """What polx needs to know about the env. Picklable: it holds only its config."""

    name = "$name"

    def __init__(self, config):
        self.config = config
        self.shape_meta = {"obs": {"pos": {"shape": [2], "type": "low_dim"}, "goal": {"shape": [2], "type": "low_dim"}}, "action": {"shape": [2]}}

    def make_env(self):
        return ${Name}Env(self.config)

    def dataset_obs(self, data):
        return {key: np.asarray(data[key], dtype=np.float32) for key in ("pos", "goal", "action")}

    def default_dataset(self, progress=True):
        """Built on first use in polx's cache; the name hashes every config field, so a setting
        that changes the data never reuses a dataset made with another value (polx.data.cache)."""
        from polx.data.cache import cache_name, cache_root, cached_dataset, data_fields

        path = cache_root() / "$name" / cache_name("${name}_demos", data_fields(self.config), DATASET_VERSION)
        build = lambda: self.generate_demos(path, self.config.n_demos, progress=progress)  # noqa: E731
        return cached_dataset(path, build, f"writing {self.config.n_demos} $name expert demonstrations")

    def generate_demos(self, out, episodes, seed=0, workers=1, keep_all=False, progress=True):
        """Seeds seed, seed+1, ... in order; failed episodes kept only with keep_all; the store is
        published when every episode is in. The summary is the one ``polx data generate`` prints."""
        from polx.data.cache import collect_demos

        return collect_demos(out, episodes, functools.partial(expert_episode, self.config), env="$name",
                             seed=seed, workers=workers, keep_all=keep_all, progress=progress)


def expert_episode(config, seed):
    """One expert episode (the expert commands the goal itself): (arrays, success)."""
    env = ${Name}Env(config)
    obs, _ = env.reset(seed=seed)
    rows = {"pos": [], "goal": [], "action": []}
    success = False
    for _ in range(60):
        action = env.goal.astype(np.float32)
        rows["pos"].append(obs["pos"])
        rows["goal"].append(obs["goal"])
        rows["action"].append(action)
        obs, _, success, _, _ = env.step(action)
        if success:
            break
    return {key: np.stack(value) for key, value in rows.items()}, success


def draw(env, path):
    """The executed path in blue, the goal in green, as a 64x64 PNG at ``path``."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), "white")
    canvas = ImageDraw.Draw(image)
    points = [tuple(((p + 1) / 2 * 63).tolist()) for p in env.path]
    if len(points) > 1:
        canvas.line(points, fill="blue", width=1)
    gx, gy = ((env.goal + 1) / 2 * 63).tolist()
    canvas.ellipse([gx - 2, gy - 2, gx + 2, gy + 2], outline="green")
    image.save(path, format="PNG")
    return path
'''

ENV_TEST = '''
"""Env $name registers, is deterministic per seed and picklable, and its demos succeed."""

import pickle

import numpy as np

from polx.data.replay_buffer import ReplayBuffer
from polx.plugins import load_plugins
from polx.testing import check_env
from $package import plugin
from $package.config import ${Name}Config
from $package.env import ${Name}Adapter


def _plugins():
    """The installed plugins, with this one added when it is not installed (tests run from the source tree)."""
    plugins = load_plugins()
    if "$name" in plugins.registry.names("$kind"):
        return plugins
    return load_plugins(extra=[("$name", plugin)])


def test_registers():
    plugins = load_plugins(entry_points=[], extra=[("$name", plugin)])
    assert plugins.registry.get("env", "$name").preset["eval"]["max_steps"] == 60


def test_episodes_depend_only_on_their_seed_and_the_adapter_pickles():
    adapter = pickle.loads(pickle.dumps(${Name}Adapter(${Name}Config())))
    runs = []
    for _ in range(2):
        env = adapter.make_env()
        obs, _ = env.reset(seed=7)
        runs.append([env.step(np.zeros(2))[1] for _ in range(5)])
    assert runs[0] == runs[1]
    assert set(obs) == set(adapter.shape_meta["obs"])


def test_demos_are_written_and_match_the_observation_keys(tmp_path):
    adapter = ${Name}Adapter(${Name}Config())
    summary = adapter.generate_demos(tmp_path / "demos.zarr", 4, progress=False)
    rb = ReplayBuffer.open(summary["out"])
    assert rb.n_episodes == summary["episodes"] == 4 and summary["success_rate"] > 0
    mapped = adapter.dataset_obs(rb.load())  # every data/<key> array, whole
    assert set(mapped) == {"pos", "goal", "action"}


def test_the_default_dataset_is_cached_once_per_config(tmp_path, monkeypatch):
    monkeypatch.setenv("POLX_CACHE_DIR", str(tmp_path))
    first = ${Name}Adapter(${Name}Config(n_demos=3)).default_dataset(progress=False)
    assert ${Name}Adapter(${Name}Config(n_demos=3)).default_dataset(progress=False) == first
    other = ${Name}Adapter(${Name}Config(n_demos=3, max_speed=0.2)).default_dataset(progress=False)
    assert other != first and ReplayBuffer.open(other).n_episodes == 3


def test_render_trajectory_draws_a_png(tmp_path):
    adapter = ${Name}Adapter(${Name}Config())
    env = adapter.make_env()
    env.reset(seed=0)
    env.step(np.zeros(2))
    path = str(tmp_path / "t.png")
    assert plugin.render_trajectory(env=env, episode=None, path=path) == path
    assert plugin.render_trajectory(env=object(), episode=None, path=path) is None


def test_keeps_the_polx_env_contract():
    """polx.testing: shape_meta well formed, the adapter pickles, reset/step give exactly its keys and shapes."""
    check_env(_plugins(), "$name")
'''

# ---------------------------------------------------------------------------------------------
# logger

LOGGER_CONFIG = '''
"""Config of logger $name."""

from attrs import define, field

from polx.config import doc


@define(frozen=True, kw_only=True)
class ${Name}Config:
    """Logger $name: every scalar and image path as a CSV row."""

    enabled: bool = doc("false: the run does not open this logger", default=True)
    filename: str = doc("CSV file in the run directory", default="$name.csv")
'''

LOGGER_PLUGIN = '''
"""Entry point of $dist: registers logger $name."""

from polx import hookimpl
from $package.config import ${Name}Config


@hookimpl
def register_components(register):
    register("logger", "$name", ${Name}Config, "$package.logger:${Name}Logger", help="CSV rows step,key,value in the run directory")
'''

LOGGER_MODULE = '''
"""Logger $name: ``step,key,value`` rows. ``images`` values are PNG paths built from ``run.dir``."""

import csv
from pathlib import Path


class ${Name}Logger:
    def __init__(self, config, run):
        path = Path(run.dir) / config.filename
        new = not path.exists()
        self.file = open(path, "a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(["step", "key", "value"])

    def log(self, step, metrics, images):
        for key, value in metrics.items():
            self.writer.writerow([step, key, value])
        for key, path in images.items():
            self.writer.writerow([step, key, path])
        self.file.flush()

    def close(self):
        self.file.close()
'''

LOGGER_TEST = '''
"""Logger $name registers and writes what it receives."""

import csv

from polx.components import Run
from polx.plugins import load_plugins
from polx.testing import check_logger
from $package import plugin
from $package.config import ${Name}Config
from $package.logger import ${Name}Logger


def _plugins():
    """The installed plugins, with this one added when it is not installed (tests run from the source tree)."""
    plugins = load_plugins()
    if "$name" in plugins.registry.names("$kind"):
        return plugins
    return load_plugins(extra=[("$name", plugin)])


def test_registers():
    plugins = load_plugins(entry_points=[], extra=[("$name", plugin)])
    assert plugins.registry.get("logger", "$name").config_cls is ${Name}Config


def test_rows(tmp_path):
    logger = ${Name}Logger(${Name}Config(), Run(dir=tmp_path, name="t", config={}))
    logger.log(5, {"train_loss": 0.25}, {"test/trajectory_0": "media/rollout_5/episode_0.png"})
    logger.close()
    rows = list(csv.reader((tmp_path / "$name.csv").open()))
    assert rows == [["step", "key", "value"], ["5", "train_loss", "0.25"], ["5", "test/trajectory_0", "media/rollout_5/episode_0.png"]]


def test_keeps_the_polx_logger_contract(tmp_path):
    """polx.testing: opens for a run, logs numbers and a PNG path, closes."""
    check_logger(_plugins(), "$name", tmp_path)
'''

# ---------------------------------------------------------------------------------------------
# dataset format

DATASET_CONFIG = '''
"""Config of dataset format $name (loaded with the plugin: no heavy imports here)."""

from attrs import define


@define(frozen=True, kw_only=True)
class ${Name}Config:
    """Dataset format $name. polx builds a format with its config's defaults (there is no per-run
    section for formats), so settings that differ between datasets belong in the data itself."""
'''

DATASET_PLUGIN = '''
"""Entry point of $dist: registers dataset format $name (cheap: config classes only)."""

from polx import hookimpl
from $package.config import ${Name}Config


@hookimpl
def register_components(register):
    register("dataset", "$name", ${Name}Config, "$package.dataset:${Name}Format",
             help="a directory holding $name.npz: every step array plus episode_ends")
'''

DATASET_MODULE = '''
"""Dataset format $name: a directory holding one ``$name.npz`` with every step array (equal
lengths, one row per step) and ``episode_ends`` (int64 exclusive end steps, cumulative).

The contract (``polx.components.DatasetFormat``, ``DatasetReader``): ``detect`` looks at names
only and never raises; ``open`` validates and raises ``polx.errors.DatasetError`` naming the file
and key (exit 2); ``write`` is atomic, refuses an existing ``out`` and returns the episode count.
"""

import os
import shutil
from pathlib import Path

import numpy as np

from polx.errors import DatasetError

FILE = "$name.npz"
ENDS = "episode_ends"


class ${Name}Format:
    name = "$name"

    def __init__(self, config):
        self.config = config

    def detect(self, path) -> bool:
        return (Path(path) / FILE).is_file()

    def open(self, path) -> "${Name}Reader":
        return ${Name}Reader(Path(path))

    def write(self, out, episodes) -> int:
        """``{key: (T, ...)}`` episodes as a new dataset at ``out``: written aside, renamed into place."""
        out = Path(out)
        if out.exists():
            raise DatasetError(f"{str(out)!r} exists; choose a new path (a dataset is never overwritten)")
        arrays, ends = {}, []
        for i, episode in enumerate(episodes):
            steps = {len(value) for value in episode.values()}
            if len(steps) != 1 or (ends and set(episode) != set(arrays)):
                raise DatasetError(f"episode {i}: every episode needs the same keys, each with one row per step")
            for key, value in episode.items():
                arrays.setdefault(key, []).append(np.asarray(value))
            ends.append((ends[-1] if ends else 0) + steps.pop())
        if not ends:
            raise DatasetError(f"no episodes to write to {str(out)!r}")
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            np.savez(tmp / FILE, **{key: np.concatenate(parts) for key, parts in arrays.items()}, **{ENDS: np.asarray(ends, np.int64)})
            os.rename(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return len(ends)


class ${Name}Reader:
    """Arrays are read from the file when first asked for, then kept."""

    format = "$name"

    def __init__(self, path: Path):
        self.path, self.file = path, path / FILE
        try:
            with np.load(self.file) as data:
                names = list(data.files)
                self.episode_ends = np.asarray(data[ENDS], dtype=np.int64) if ENDS in names else None
        except Exception as exc:
            raise DatasetError(f"{str(self.file)!r} is not a readable .npz file: {exc}") from None
        if self.episode_ends is None:
            raise DatasetError(f"{str(self.file)!r} has no {ENDS!r} array")
        self._keys = sorted(name for name in names if name != ENDS)
        self._arrays = {}

    def keys(self) -> list[str]:
        return list(self._keys)

    def _array(self, key: str) -> np.ndarray:
        if key not in self._arrays:
            if key not in self._keys:
                raise DatasetError(f"{str(self.file)!r} has no array {key!r}; it has {', '.join(self._keys)}")
            with np.load(self.file) as data:
                self._arrays[key] = data[key]
        return self._arrays[key]

    def array_info(self, key: str):
        array = self._array(key)
        return array.shape, array.dtype

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        return self._array(key)[start:stop]
'''

DATASET_TEST = '''
"""Dataset format $name registers, keeps polx's dataset contract and refuses what it cannot read."""

import numpy as np
import pytest

from polx.errors import DatasetError
from polx.plugins import load_plugins
from polx.testing import check_dataset_format
from $package import plugin
from $package.config import ${Name}Config
from $package.dataset import FILE, ${Name}Format


def _plugins():
    """The installed plugins, with this one added when it is not installed (tests run from the source tree)."""
    plugins = load_plugins()
    if "$name" in plugins.registry.names("dataset"):
        return plugins
    return load_plugins(extra=[("$name", plugin)])


def test_registers():
    assert _plugins().registry.get("dataset", "$name").help


def test_keeps_the_polx_dataset_contract(tmp_path):
    """polx.testing: detect never claims or raises on other paths; written data are detected,
    open, and read back exactly; write refuses an existing path and returns the episode count."""
    check_dataset_format(_plugins(), "$name", tmp_path)


def test_a_file_without_episode_ends_is_refused_by_name(tmp_path):
    (tmp_path / "bad").mkdir()
    np.savez(tmp_path / "bad" / FILE, action=np.zeros((3, 2)))
    with pytest.raises(DatasetError, match="episode_ends"):
        ${Name}Format(${Name}Config()).open(tmp_path / "bad")
'''


KINDS = {
    "head": {"config": HEAD_CONFIG, "plugin": HEAD_PLUGIN, "module": HEAD_MODULE, "test": HEAD_TEST,
             "readme": _README.replace("$usage", "Train with it: `polx train --head $name --env pusht` (objective ddpm).")},
    "objective": {"config": OBJECTIVE_CONFIG, "plugin": OBJECTIVE_PLUGIN, "module": OBJECTIVE_MODULE, "test": OBJECTIVE_TEST,
                  "readme": _README.replace("$usage", "Train with it: `polx train --head ddpm_transformer --objective $name --env pusht`.")},
    "env": {"config": ENV_CONFIG, "plugin": ENV_PLUGIN, "module": ENV_MODULE, "test": ENV_TEST,
            "readme": _README.replace("$usage", "Train on it: `polx train --head imf_attnres --env $name`; `polx data generate --env $name --episodes 100 --out demos.zarr`.")},
    "logger": {"config": LOGGER_CONFIG, "plugin": LOGGER_PLUGIN, "module": LOGGER_MODULE, "test": LOGGER_TEST,
               "readme": _README.replace("$usage", "Log a run with it: `polx train --head imf_attnres --env pusht --logger $name`.")},
    "dataset": {"config": DATASET_CONFIG, "plugin": DATASET_PLUGIN, "module": DATASET_MODULE, "test": DATASET_TEST,
                "readme": _README.replace("$usage", "Convert to it and train from it: `polx data convert demos.zarr demos_$name --to $name`, "
                                                    "`polx data info demos_$name`, `polx train --head imf_attnres --dataset demos_$name`.")},
}
