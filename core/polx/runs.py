"""From command-line arguments to a validated training plan, before anything is written.

Everything that can be wrong with the user's input (names, config, dataset path, resume
directory) is found here, so a bad command exits 2 with nothing created on disk.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Iterable

import attrs
import yaml

from polx.config import RunConfig, resolve_config
from polx.errors import DatasetError, UserInputError
from polx.plugins import PolxPlugins, require


@attrs.define(kw_only=True)
class TrainingPlan:
    """What ``polx train`` will do. ``run_dir`` does not exist yet unless ``resume``."""

    plugins: PolxPlugins
    config: RunConfig
    run_dir: Path
    resume: bool
    argv: list[str]


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
    out: Path = Path("runs"),
    run_dir: Path | None = None,
    resume_dir: Path | None = None,
    overrides: Iterable[str] = (),
    argv: list[str] | None = None,
) -> TrainingPlan:
    """Validate the request; ``run_dir`` names the exact directory (default: under ``out`` by date)."""
    overrides = list(overrides)
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
        config = config_from_saved(plugins, saved, overrides)
        if not (Path(resume_dir) / "checkpoints" / "latest.ckpt").is_file():
            raise UserInputError(f"--resume {str(resume_dir)!r} has no checkpoints/latest.ckpt to resume from")
        run_dir, resume = Path(resume_dir), True
    else:
        head = require(plugins, "head", head, "--head")
        env = require(plugins, "env", env, "--env")
        names = logger_names(loggers)
        if "json" not in loggers and "json" not in plugins.registry.names("logger"):
            names = tuple(n for n in names if n != "json")  # the default, but its plugin is absent
        config = resolve_config(
            plugins,
            head=head,
            env=env,
            objective=objective,
            loggers=names,
            config_files=config_files,
            overrides=overrides,
        )
        if run_dir is not None and Path(run_dir).exists() and any(Path(run_dir).iterdir()):
            raise UserInputError(f"--run-dir {str(run_dir)!r} exists and is not empty; use --resume to continue it")
        run_dir, resume = (Path(run_dir) if run_dir is not None else Path(out) / run_dir_name(config)), False
    if config.data.path is not None and not Path(config.data.path).exists():
        raise DatasetError(f"dataset {config.data.path!r} does not exist (data.path / --dataset)")
    return TrainingPlan(plugins=plugins, config=config, run_dir=run_dir, resume=resume, argv=list(argv or []))


def build_env_adapter(plugins: PolxPlugins, env: str, overrides: Iterable[str] = ()) -> Any:
    """The env's adapter with its config from defaults, its preset's ``env`` section and ``env.KEY=VALUE``."""
    from polx.config import ConfigError, deep_merge, defaults_of, parse_override, set_dotted, structure_section, unknown_keys

    comp = plugins.registry.get("env", env)
    tree = deep_merge(defaults_of(comp.config_cls), comp.preset.get("env", {}))
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] != "env" or len(keys) < 2:
            raise UserInputError(f"{text!r}: only env.KEY=VALUE overrides apply here")
        tree = set_dotted(tree, keys[1:], value)
    problems = unknown_keys({"env": tree}, {"env": comp.config_cls})
    cfg = None if problems else structure_section("env", tree, comp.config_cls, problems)
    if problems:
        raise ConfigError(problems)
    return comp.build(cfg)
