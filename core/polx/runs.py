"""From command-line arguments to a validated training plan, before anything is written.

Everything that can be wrong with the user's input (names, config, dataset path, resume
directory) is found here, so a bad command exits 2 with nothing created on disk.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

import attrs
import yaml

from polx.config import ConfigError, RunConfig, resolve_config, show
from polx.data.formats import missing_path_message
from polx.errors import DatasetError, UserInputError
from polx.executor import check_backend
from polx.plugins import PolxPlugins, require
from polx.base.paths import check_writable_dir
from polx.runlock import RUN_LOCK


@attrs.define(kw_only=True)
class TrainingPlan:
    """What ``polx train`` will do. ``run_dir`` does not exist yet unless ``resume`` (or it is an empty ``--run-dir``).

    ``exact_run_dir``: ``run_dir`` is used as it is (``--run-dir``), not as the base of a fresh
    ``_2``, ``_3``... name (the default ``OUT/<date>/<time>_<head>_<env>``).
    """

    plugins: PolxPlugins
    config: RunConfig
    run_dir: Path
    resume: bool
    argv: list[str]
    exact_run_dir: bool = False


def logger_names(requested: Iterable[str]) -> tuple[str, ...]:
    """``json`` is always on unless ``none`` is asked for; order kept, duplicates dropped."""
    requested = list(requested)
    if "none" in requested:
        names = [n for n in requested if n not in ("none", "json")]
    else:
        names = ["json", *requested]
    return tuple(dict.fromkeys(names))


def run_dir_name(config: RunConfig, now: _dt.datetime | None = None) -> Path:
    now = now or _dt.datetime.now()
    c = config.components
    return Path(now.strftime("%Y-%m-%d")) / f"{now.strftime('%H-%M-%S')}_{c.head}_{c.env}"


def read_run_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserInputError(f"{str(run_dir)!r} is not a polx run directory (no config.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserInputError(f"{str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("components"), dict):
        raise UserInputError(f"{str(path)!r} is not a polx run config (no components section)")
    return data


#: every episode seed must fit here: gymnasium and numpy refuse others at the first reset
EPISODE_SEEDS = (0, 2**32 - 1)
RNG_SEEDS = (0, 2**63 - 1)  # train.seed and data.split_seed (torch, numpy and Python all take these)


def _warn_if_data_moved(resume_dir: Path, config: RunConfig) -> None:
    """Say so when a resume will train on other data than its checkpoint did (config.yaml's
    ``data.path`` edited, or a ``data.path=`` override): the run goes on, but not silently."""
    try:
        import torch

        state = torch.load(resume_dir / "checkpoints" / "latest.ckpt", map_location="cpu", weights_only=True, mmap=True)
        trained = ((state.get("config") or {}).get("data") or {}).get("path")
    except Exception:  # a damaged checkpoint: the trainer refuses it by name
        return
    now = config.data.path
    if trained != now:
        print(
            f"polx: warning: resuming {str(resume_dir)!r} on data.path={now!r}, but its checkpoint was trained on "
            f"data.path={trained!r}; the rest of the run trains on the new data (restore data.path in "
            f"{resume_dir / 'config.yaml'} to continue on the old)",
            file=sys.stderr,
        )


def check_seeds(config: RunConfig) -> None:
    """``ConfigError`` naming each seed (or seed range) outside what the libraries accept."""
    ev, problems = config.eval, []
    for key, first, count_key, count in (("eval.test_start_seed", ev.test_start_seed, "eval.n_test", ev.n_test),
                                         ("eval.train_start_seed", ev.train_start_seed, "eval.n_train", ev.n_train)):
        last = first + max(count, 1) - 1
        if not EPISODE_SEEDS[0] <= first <= EPISODE_SEEDS[1]:
            problems.append(f"{key}: episode seeds must lie in {EPISODE_SEEDS[0]}..{EPISODE_SEEDS[1]} (2**32 - 1); got {show(first)}")
        elif last > EPISODE_SEEDS[1]:  # the start is fine: the count runs past the last seed
            problems.append(
                f"{count_key}: {count} episodes from {key}={first} would use seeds up to {last}, past {EPISODE_SEEDS[1]} (2**32 - 1); "
                f"at most {EPISODE_SEEDS[1] - first + 1} fit (or lower {key})"
            )
    for key, value in (("train.seed", config.train.seed), ("data.split_seed", config.data.split_seed)):
        if not RNG_SEEDS[0] <= value <= RNG_SEEDS[1]:
            problems.append(f"{key}: must lie in {RNG_SEEDS[0]}..{RNG_SEEDS[1]} (2**63 - 1); got {show(value)}")
    if problems:
        raise ConfigError(problems)


def check_sample_steps(config: RunConfig) -> None:
    """``ConfigError`` naming each sampling step count above what the objective can sample with.

    An objective's config may declare ``max_sample_steps`` (ddpm: its ``num_train_timesteps``);
    without it, any positive count is accepted. Checked before anything is written, so that a
    bad ``eval.sample_steps`` is not found at the first validation of a run already under way."""
    limit = getattr(config.objective, "max_sample_steps", None)
    if limit is None:
        return
    problems = [
        f"{key}: the {config.components.objective!r} objective samples with 1 to {limit} steps here; got {value}"
        for key, value in (
            ("eval.num_steps", config.eval.num_steps),
            ("train.val_sample_steps", config.train.val_sample_steps),
            *(("eval.sample_steps", n) for n in config.eval.sample_steps),
        )
        if value is not None and value > limit
    ]
    if problems:
        raise ConfigError(problems)


def _absolute(path: str | None, base: Path) -> str | None:
    return None if path is None or Path(path).is_absolute() else str(base / path)


def _with_absolute_data_path(config: RunConfig, base: Path) -> RunConfig:
    """``data.path`` made absolute against ``base``, so a resume from elsewhere reads the same data."""
    path = _absolute(config.data.path, base)
    if path is not None:
        config = attrs.evolve(config, data=attrs.evolve(config.data, path=path))
    init_from = _absolute(config.train.init_from, base)  # the warm start's checkpoint, likewise
    return config if init_from is None else attrs.evolve(config, train=attrs.evolve(config.train, init_from=init_from))


def _saved_cwd(run_dir: Path) -> Path | None:
    """The working directory the run started in (its manifest), against which old relative paths resolve."""
    try:
        return Path(json.loads((Path(run_dir) / "manifest.json").read_text())["cwd"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def config_from_saved(plugins: PolxPlugins, saved: dict, overrides: Iterable[str] = ()) -> RunConfig:
    """Rebuild a run's exact config from its saved dict, then apply ``overrides``."""
    comps = saved["components"]
    return resolve_config(
        plugins,
        head=comps["head"],
        env=comps["env"],
        objective=comps["objective"],
        loggers=comps.get("loggers", ["json"]),
        overrides=overrides,
        base=saved,
    )


def prepare_training(
    plugins: PolxPlugins,
    *,
    head: str | None,
    env: str | None,
    objective: str | None = None,
    dataset: Path | None = None,
    config_files: Iterable[Path] = (),
    loggers: Iterable[str] = (),
    out: Path | None = None,
    run_dir: Path | None = None,
    resume_dir: Path | None = None,
    overrides: Iterable[str] = (),
    argv: list[str] | None = None,
    dry_call: bool = False,
) -> TrainingPlan:
    """Validate the request; ``run_dir`` names the exact directory (default: under ``out`` by date).

    ``data.path`` is made absolute (against the working directory), so ``config.yaml`` names the
    data the run trained on wherever it is resumed from. ``dry_call`` (a new run about to start):
    build the head and objective and call them once on a tiny batch (``polx.contracts.check_run``),
    so a head or objective that breaks its contract exits 2 before the run directory exists.
    """
    overrides = list(overrides)
    if dataset is not None and not Path(dataset).exists():  # before the env-less run reads shapes from it
        raise DatasetError(f"{missing_path_message(dataset)} (--dataset)")
    if dataset is not None:
        overrides.append(f"data.path={yaml.safe_dump(str(dataset)).splitlines()[0]}")
    if resume_dir is not None:
        saved = read_run_config(resume_dir)
        if (head and head != saved["components"]["head"]) or (env and env != saved["components"]["env"]):
            raise UserInputError(
                f"--resume {str(resume_dir)!r} is a run of head {saved['components']['head']!r} on env {saved['components']['env']!r}; "
                "drop --head/--env or start a new run"
            )
        for path in config_files:
            raise UserInputError("--config cannot be combined with --resume; pass KEY=VALUE overrides instead")
        ignored = [flag for flag, given in (("--objective", objective), ("--logger", list(loggers)), ("--run-dir", run_dir), ("--out", out)) if given]
        if ignored:
            raise UserInputError(
                f"{', '.join(ignored)} cannot be combined with --resume: a resumed run keeps its objective, loggers and "
                f"directory; drop {'them' if len(ignored) > 1 else 'it'} (or start a new run)"
            )
        saved_path = (saved.get("data") or {}).get("path")
        if isinstance(saved_path, str) and (cwd := _saved_cwd(resume_dir)) is not None:
            saved = {**saved, "data": {**saved["data"], "path": _absolute(saved_path, cwd) or saved_path}}
        config = config_from_saved(plugins, saved, overrides)
        if not (Path(resume_dir) / "checkpoints" / "latest.ckpt").is_file():
            raise UserInputError(f"--resume {str(resume_dir)!r} has no checkpoints/latest.ckpt to resume from")
        _warn_if_data_moved(Path(resume_dir), config)
        run_dir, resume, exact = Path(resume_dir), True, True
    else:
        head = require(plugins, "head", head, "--head")
        if env is None and dataset is not None:  # no simulator: shapes from the dataset (polx.data.offline_env)
            env = "offline"
            overrides = [*offline_overrides(dataset, overrides), *overrides]
        env = require(plugins, "env", env, "--env")
        names = logger_names(loggers)
        config = resolve_config(
            plugins,
            head=head,
            env=env,
            objective=objective,
            loggers=names,
            config_files=config_files,
            overrides=overrides,
        )
        if env == "offline":
            config = _offline_image_size(config, overrides)
        if run_dir is not None:
            check_writable_dir(run_dir, "--run-dir")
            if Path(run_dir).is_dir() and any(p.name != RUN_LOCK for p in Path(run_dir).iterdir()):
                raise UserInputError(f"--run-dir {str(run_dir)!r} exists and is not empty; use --resume to continue it")
        else:
            check_writable_dir(Path(out or "runs"), "--out")
        exact = run_dir is not None
        run_dir, resume = (Path(run_dir) if exact else Path(out or "runs") / run_dir_name(config)), False
    given = config.data.path  # as the user wrote it: a hub id like lerobot/pusht is recognised before it is made absolute
    config = _with_absolute_data_path(config, Path.cwd())
    check_seeds(config)
    check_sample_steps(config)
    check_backend(config.exec)
    if config.data.path is not None and not Path(config.data.path).exists():
        raise DatasetError(f"{missing_path_message(given)} (data.path / --dataset)")
    if dry_call and not resume:
        from polx.contracts import check_run

        check_run(plugins, config)
    return TrainingPlan(plugins=plugins, config=config, run_dir=run_dir, resume=resume, argv=list(argv or []), exact_run_dir=exact)


def offline_overrides(dataset: Path, overrides: Iterable[str]) -> list[str]:
    """``env.dataset`` (absolute) and ``env.format`` (from ``data.format``) for an env-less run."""
    fmt = next((o.split("=", 1)[1] for o in overrides if o.startswith("data.format=")), None)
    out = [f"env.dataset={yaml.safe_dump(str(Path(dataset).absolute())).splitlines()[0]}"]
    return out + ([f"env.format={fmt}"] if fmt else [])


def _offline_image_size(config: RunConfig, overrides: Iterable[str]) -> RunConfig:
    """An env-less run resizes camera frames at load to ``encoder.image_size`` (the offline env's field follows it)."""
    if any(o.split("=", 1)[0].strip() == "env.image_size" for o in overrides):
        raise UserInputError("env.image_size: training without an env resizes frames to encoder.image_size; set that instead")
    return attrs.evolve(config, env=attrs.evolve(config.env, image_size=config.encoder.image_size))


def build_env_adapter(plugins: PolxPlugins, env: str, overrides: Iterable[str] = ()) -> Any:
    """The env's adapter with its config from defaults, its preset's ``env`` section and ``env.KEY=VALUE``."""
    from polx.config import deep_merge, defaults_of, resolve_sections

    comp = plugins.registry.get("env", env)
    tree = {"env": deep_merge(defaults_of(comp.config_cls), comp.preset.get("env", {}))}
    return comp.build(resolve_sections({"env": comp.config_cls}, tree, overrides, only_schema=True)["env"])
