"""Contract checks for any registered component: what a plugin author runs in their tests.

Each check builds the component through the registry (as training does), exercises what polx
calls on it, and raises ``ContractError`` naming the component, its plugin and what was expected.
polx's own tests run them on every registered component, and ``polx plugin new`` writes a test
that runs them on the new one::

    from polx.plugins import load_plugins
    from polx.testing import check_component

    def test_my_head_keeps_its_contract(tmp_path):
        check_component(load_plugins(), "head", "my_head", tmp_path)

``check_component`` dispatches on the kind; the per-kind checks take options (a smaller config
for a big head, a logger config that stays offline, a sample dataset for a format that cannot
write). Nothing here needs pytest.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from polx.components import ObsActionSpec, Run
from polx.contracts import ContractError, build_head, check_pair, head_problem

__all__ = [
    "ContractError",
    "check_component",
    "check_dataset_format",
    "check_env",
    "check_head",
    "check_logger",
    "check_objective",
    "components",
    "pairs_of",
]

#: a spec with two action groups, so per-group code paths run too
SPEC = ObsActionSpec(action_dim=4, horizon=8, n_obs_steps=2, cond_dim=6, action_groups=(("left", 0, 2), ("right", 2, 4)))


def components(plugins: Any, kind: str | None = None, plugin: str | None = None) -> list[tuple[str, str]]:
    """``(kind, name)`` of every registered component (of ``kind``, of ``plugin``), for ``pytest.mark.parametrize``."""
    return sorted((c.kind, c.name) for c in plugins.registry if (kind is None or c.kind == kind) and (plugin is None or c.plugin == plugin))


def pairs_of(plugins: Any, kind: str, name: str) -> list[str]:
    """The registered names that pair with head (or objective) ``name``: declared on either side."""
    reg = plugins.registry
    if kind == "head":
        head = reg.get("head", name)
        declared = set(head.objectives or ()) | ({head.default_objective} if head.default_objective else set())
        declared |= {o.name for o in reg if o.kind == "objective" and name in (o.heads or ())}
        return sorted(n for n in declared if n in reg.names("objective"))
    obj = reg.get("objective", name)
    declared = set(obj.heads or ())
    declared |= {h.name for h in reg if h.kind == "head" and (name in (h.objectives or ()) or h.default_objective == name)}
    return sorted(n for n in declared if n in reg.names("head"))


def _config(comp: Any, config: Any) -> Any:
    if config is None:
        return comp.config_cls()
    if isinstance(config, dict):
        return comp.config_cls(**config)
    return config


# ---------------------------------------------------------------------------------------------
# heads and objectives


def check_head(plugins: Any, name: str, *, config: Any = None, spec: ObsActionSpec = SPEC, objectives: list[str] | None = None) -> None:
    """A head builds for ``spec``, is a module with ``spec``, ``forward`` and ``get_optim_groups`` (each
    parameter once), and answers each objective it pairs with (``check_pair``: a finite scalar loss,
    a ``(batch, horizon, action_dim)`` sample). ``config``: an instance or a dict of options."""
    comp = plugins.registry.get("head", name)
    head = build_head(plugins, comp, _config(comp, config), spec)
    problem = head_problem(comp, head)
    if problem:
        raise ContractError(problem)
    if getattr(head, "spec", None) != spec:
        raise ContractError(f"{comp.describe()}: head.spec is {getattr(head, 'spec', None)}; expected the spec it was built for, {spec}")
    for objective in pairs_of(plugins, "head", name) if objectives is None else objectives:
        check_pair(plugins, name, objective, spec, head_config=_config(comp, config))


def check_objective(
    plugins: Any, name: str, *, config: Any = None, head: str | None = None, head_config: Any = None, spec: ObsActionSpec = SPEC,
) -> None:  # fmt: skip
    """An objective builds, has ``name``, ``default_num_steps``, ``compute_loss`` and ``sample``, and with
    ``head`` (default: every registered head it pairs with) passes ``check_pair`` and the masking
    property: entries that are not ``valid`` never change the loss, a valid one does."""
    comp = plugins.registry.get("objective", name)
    obj = comp.build(_config(comp, config))
    missing = [m for m in ("name", "default_num_steps", "compute_loss", "sample") if not hasattr(obj, m)]
    if missing:
        raise ContractError(f"{comp.describe()}: the objective has no {', '.join(missing)} (docs/plugin_hooks.md, Objectives)")
    heads = [head] if head is not None else pairs_of(plugins, "objective", name)
    if not heads:
        raise ContractError(f"{comp.describe()}: no registered head pairs with it; pass head=NAME (a head whose call it makes)")
    for head_name in heads:
        head_c = plugins.registry.get("head", head_name)
        hcfg = _config(head_c, head_config if head_name == head else None)
        check_pair(plugins, head_name, name, spec, head_config=hcfg, objective_config=_config(comp, config))
        _check_masking(plugins, comp, obj, head_c, hcfg, spec)


def _check_masking(plugins: Any, comp: Any, obj: Any, head_c: Any, head_config: Any, spec: ObsActionSpec) -> None:
    import torch

    from polx.policy.valid import valid_mask

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = build_head(plugins, head_c, head_config, spec).eval()  # eval: no dropout draws
        B, T, A = 3, spec.horizon, spec.action_dim
        gen = torch.Generator().manual_seed(1)
        action = torch.randn(B, T, A, generator=gen)
        cond = torch.randn(B, spec.n_obs_steps, spec.cond_dim, generator=gen)
        is_pad = torch.zeros(B, T, dtype=torch.bool)
        is_pad[1:, T // 2 :] = True
        mask = torch.ones(1, 1, A, dtype=torch.bool)
        mask[..., -1] = False

        def loss_of(x: torch.Tensor) -> float:
            batch = {"action": x, "cond": cond, "action_is_pad": is_pad, "action_mask": mask, "valid": valid_mask(x, is_pad, mask)}
            torch.manual_seed(2)  # the objective's own draws are the same each call
            loss, _ = plugins.hook.compute_loss(objective=obj, head=head, batch=batch)
            return float(loss.detach())

        valid = valid_mask(action, is_pad, mask)
        reference = loss_of(action)
        masked = loss_of(torch.where(valid, action, torch.full_like(action, 1e3)))
        moved = loss_of(torch.where(valid, action + 0.7, action))
    where = f"{comp.describe()} with head {head_c.name!r}"
    if abs(masked - reference) > 1e-5 * max(1.0, abs(reference)):
        raise ContractError(
            f"{where}: entries that are not valid (padding, masked dims) changed the loss from {reference:.6g} to {masked:.6g}; "
            "zero them before noising and average with polx.policy.valid.masked_mean (docs/plugin_hooks.md, Objectives)"
        )
    if abs(moved - reference) <= 1e-9:
        raise ContractError(f"{where}: changing valid action entries left the loss at {reference:.6g}; the loss ignores the action")


# ---------------------------------------------------------------------------------------------
# environments


def check_env(plugins: Any, name: str, *, overrides: tuple[str, ...] = (), rollout: bool = True, steps: int = 2) -> None:
    """An env adapter builds (defaults, its preset, ``env.KEY=VALUE`` ``overrides``), names its
    observation keys and action in a well-formed ``shape_meta``, pickles, and (``rollout``) its
    ``make_env()`` env resets to exactly those keys and shapes, the same observation for the same
    seed, and steps with an action of the declared shape."""
    import numpy as np

    from polx.policy.layout import declared_groups
    from polx.runs import build_env_adapter

    comp = plugins.registry.get("env", name)
    where = comp.describe()
    adapter = build_env_adapter(plugins, name, overrides)
    missing = [m for m in ("name", "shape_meta", "make_env", "dataset_obs", "default_dataset", "generate_demos") if not hasattr(adapter, m)]
    if missing:
        raise ContractError(f"{where}: the adapter has no {', '.join(missing)} (docs/plugin_hooks.md, Environments)")
    meta = adapter.shape_meta
    obs_meta = meta.get("obs") if isinstance(meta, dict) else None
    if not isinstance(obs_meta, dict) or not obs_meta or "action" not in meta or len(meta["action"].get("shape", ())) != 1:
        raise ContractError(f"{where}: shape_meta must be {{'obs': {{key: {{'shape', 'type'}}}}, 'action': {{'shape': [A]}}}}; got {meta!r}")
    for key, entry in obs_meta.items():
        kind, shape = entry.get("type"), list(entry.get("shape", ()))
        if kind not in ("rgb", "low_dim") or (kind == "rgb" and len(shape) != 3) or not shape:
            raise ContractError(f"{where}: shape_meta obs {key!r} is {entry!r}; expected type rgb with shape [C, H, W] or low_dim with [D]")
    try:
        declared_groups(meta["action"])
    except Exception as exc:
        raise ContractError(f"{where}: shape_meta action groups: {exc}") from exc
    try:
        pickle.loads(pickle.dumps(adapter))
    except Exception as exc:
        raise ContractError(f"{where}: the adapter does not pickle ({type(exc).__name__}: {exc}); rollout workers receive it pickled") from exc
    if not rollout:
        return
    env = adapter.make_env()
    try:
        first = _check_obs(where, env.reset(seed=0), obs_meta, "reset(seed=0)")
        again = _check_obs(where, env.reset(seed=0), obs_meta, "reset(seed=0)")
        for key in obs_meta:
            if not np.array_equal(np.asarray(first[key]), np.asarray(again[key])):
                raise ContractError(f"{where}: reset(seed=0) twice gave different {key!r}; an episode must be a function of its seed")
        action_dim = int(meta["action"]["shape"][0])
        space = getattr(env, "action_space", None)
        if space is not None and tuple(space.shape) != (action_dim,):
            raise ContractError(f"{where}: env.action_space has shape {tuple(space.shape)}; shape_meta says ({action_dim},)")
        for _ in range(steps):
            action = space.sample() if space is not None else np.zeros(action_dim, np.float32)
            result = env.step(action)
            if not (isinstance(result, tuple) and len(result) == 5):
                raise ContractError(f"{where}: env.step returned {type(result).__name__}; expected gymnasium's (obs, reward, terminated, truncated, info)")
            _check_obs(where, (result[0], result[4]), obs_meta, "step(action)")
            float(result[1])
    finally:
        env.close()


def _check_obs(where: str, result: Any, obs_meta: dict, call: str) -> dict:
    import numpy as np

    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], dict)):
        raise ContractError(f"{where}: env.{call} must return (obs dict, info); got {type(result).__name__}")
    obs = result[0]
    if set(obs) != set(obs_meta):
        raise ContractError(f"{where}: env.{call} observation keys {sorted(obs)}; shape_meta declares {sorted(obs_meta)}")
    for key, entry in obs_meta.items():
        shape = tuple(np.asarray(obs[key]).shape)
        if shape != tuple(entry["shape"]):
            raise ContractError(f"{where}: env.{call} gives {key!r} of shape {shape}; shape_meta declares {tuple(entry['shape'])}")
    return obs


# ---------------------------------------------------------------------------------------------
# loggers


def check_logger(plugins: Any, name: str, run_dir: Path, *, config: Any = None) -> None:
    """A logger opens for a run in ``run_dir``, takes a record of numbers and one PNG, and closes.
    ``config``: an instance or a dict of options (e.g. ``{"mode": "offline"}`` for a tracker)."""
    from PIL import Image

    comp = plugins.registry.get("logger", name)
    run_dir = Path(run_dir)
    (run_dir / "media").mkdir(parents=True, exist_ok=True)
    png = run_dir / "media" / "check.png"
    Image.new("RGB", (8, 8), "white").save(png)
    run = Run(dir=run_dir, name=run_dir.name, config={"components": {"loggers": [name]}})
    logger = comp.build(_config(comp, config), run)
    missing = [m for m in ("log", "close") if not callable(getattr(logger, m, None))]
    if missing:
        raise ContractError(f"{comp.describe()}: the logger has no {', '.join(missing)} (docs/plugin_hooks.md, Loggers)")
    try:
        logger.log(0, {"train_loss": 1.0, "lr": 1e-4}, {})
        logger.log(1, {"test_mean_score": 0.5}, {"test/trajectory_0": str(png)})
    finally:
        logger.close()


# ---------------------------------------------------------------------------------------------
# dataset formats


def sample_episodes() -> list[dict]:
    """Two short episodes with a low-dim key, a camera (uint8 HWC) and ``action``."""
    import numpy as np

    rng = np.random.default_rng(0)
    return [
        {
            "state": rng.standard_normal((t, 3)).astype(np.float32),
            "cam": rng.integers(0, 255, (t, 8, 8, 3), dtype=np.uint8),
            "action": rng.standard_normal((t, 2)).astype(np.float32),
        }
        for t in (4, 3)
    ]


def check_dataset_format(plugins: Any, name: str, tmp_dir: Path, *, sample: Path | None = None, config: Any = None) -> None:
    """A dataset format builds, has ``name``, ``detect`` and ``open``; ``detect`` answers False
    (never raises) for a missing path, an empty directory and a text file; and a dataset (written
    by its ``write``, or ``sample`` for a format that cannot write) is detected, opens, and its
    reader keeps the contract (``polx.data.formats.check_reader``; a written one reads back every
    value). ``write`` must refuse an existing ``out`` and return the number of episodes."""
    import numpy as np

    from polx.data.formats import check_reader, get_episode

    comp = plugins.registry.get("dataset", name)
    where = comp.describe()
    fmt = comp.build(_config(comp, config))
    missing = [m for m in ("name", "detect", "open") if not hasattr(fmt, m)]
    if missing:
        raise ContractError(f"{where}: the format has no {', '.join(missing)} (docs/plugin_hooks.md, Dataset formats)")
    tmp_dir = Path(tmp_dir)
    (tmp_dir / "empty").mkdir(parents=True, exist_ok=True)
    (tmp_dir / "notes.txt").write_text("not a dataset\n")
    for path in (tmp_dir / "missing", tmp_dir / "empty", tmp_dir / "notes.txt"):
        try:
            claimed = fmt.detect(path)
        except Exception as exc:
            raise ContractError(f"{where}: detect({path.name!r}) raised {type(exc).__name__}: {exc}; detect answers True or False") from exc
        if claimed:
            raise ContractError(f"{where}: detect claims {path.name!r}, which is not a dataset")
    episodes = None
    if sample is None:
        if not callable(getattr(fmt, "write", None)):
            raise ContractError(f"{where}: the format cannot write; pass sample=PATH, a small dataset in this format")
        episodes, sample = sample_episodes(), tmp_dir / f"sample_{name}"
        count = fmt.write(sample, iter(episodes))
        if count != len(episodes):
            raise ContractError(f"{where}: write returned {count!r}; it returns the number of episodes written ({len(episodes)})")
        try:
            fmt.write(sample, iter(episodes))
        except Exception:
            pass
        else:
            raise ContractError(f"{where}: write to an existing path succeeded; it must refuse (DatasetError) and leave it alone")
    if not fmt.detect(sample):
        raise ContractError(f"{where}: detect does not claim {str(sample)!r}, a dataset in its own format")
    reader = check_reader(fmt.open(sample), where)
    if getattr(reader, "format", None) != name:
        raise ContractError(f"{where}: reader.format is {getattr(reader, 'format', None)!r}; expected the registered name {name!r}")
    if list(reader.keys()) != sorted(reader.keys()):
        raise ContractError(f"{where}: reader.keys() must be sorted; got {list(reader.keys())}")
    if episodes is None:
        return
    lengths = np.diff(np.concatenate([[0], np.asarray(reader.episode_ends)]))
    if lengths.tolist() != [len(e["action"]) for e in episodes]:
        raise ContractError(f"{where}: wrote episodes of {[len(e['action']) for e in episodes]} steps, read back {lengths.tolist()}")
    if set(reader.keys()) != set(episodes[0]):
        raise ContractError(f"{where}: wrote keys {sorted(episodes[0])}, read back {reader.keys()}")
    for i, episode in enumerate(episodes):
        got = get_episode(reader, i)
        for key, value in episode.items():
            if got[key].shape != value.shape or got[key].dtype != value.dtype or not np.array_equal(got[key], value):
                raise ContractError(f"{where}: episode {i} key {key!r} does not read back as written ({got[key].shape} {got[key].dtype})")


# ---------------------------------------------------------------------------------------------


def check_component(plugins: Any, kind: str, name: str, tmp_dir: Path, **options: Any) -> None:
    """Run the check for ``kind`` on component ``name`` (``options`` go to that check)."""
    if kind == "head":
        check_head(plugins, name, **options)
    elif kind == "objective":
        check_objective(plugins, name, **options)
    elif kind == "env":
        check_env(plugins, name, **options)
    elif kind == "logger":
        check_logger(plugins, name, Path(tmp_dir) / f"run_{name}", **options)
    elif kind == "dataset":
        check_dataset_format(plugins, name, Path(tmp_dir) / f"data_{name}", **options)
    else:
        raise ValueError(f"unknown kind {kind!r}")

