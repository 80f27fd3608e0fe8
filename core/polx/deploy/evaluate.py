"""``polx eval --policy DIR|ws://HOST:PORT``: roll out an exported or served policy.

The env and the evaluation settings come from the policy's saved run config (``config.json``, or
the metadata a server sends on connect) with ``env.*`` and ``eval.*`` overrides; the episodes are
run here (``eval.n_envs=1``) or over ``eval.n_envs`` spawned workers that each load the policy
directory (or connect to the server: one session each), every episode seeding the env and the
policy's noise with its seed, as ``polx eval --checkpoint`` does. Through the torch runtime a policy
therefore scores exactly as its checkpoint did, seed by seed, however many workers; through
onnxruntime its noise is numpy's, so it matches in distribution.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

from polx.deploy import artifact
from polx.errors import ConfigError, UserInputError


def is_server(source: str | Path) -> bool:
    return str(source).startswith(("ws://", "wss://"))


def env_and_eval(plugins: Any, run_config: dict, overrides: Iterable[str]) -> tuple[Any, Any, Any]:
    """(env adapter, ``EvalConfig``, ``ExecConfig``) from a saved run config and ``env.*``, ``eval.*``, ``exec.*`` overrides."""
    from polx.config import CORE_SECTIONS, resolve_sections

    env_name = (run_config.get("components") or {}).get("env")
    if not env_name:
        raise UserInputError("the policy's config names no env; it cannot be rolled out here")
    comp = plugins.registry.get("env", env_name)
    schema = {"env": comp.config_cls, "eval": CORE_SECTIONS["eval"], "exec": CORE_SECTIONS["exec"]}
    tree = {sec: dict(run_config.get(sec) or {}) for sec in schema}
    sections = resolve_sections(schema, tree, overrides, only_schema=True)
    return comp.build(sections["env"]), sections["eval"], sections["exec"]


def _check_seeds(ev: Any) -> None:
    from polx.runs import EPISODE_SEEDS

    problems = []
    for key, first, count in (("eval.test_start_seed", ev.test_start_seed, ev.n_test), ("eval.train_start_seed", ev.train_start_seed, ev.n_train)):
        last = first + max(count, 1) - 1
        if first < EPISODE_SEEDS[0] or last > EPISODE_SEEDS[1]:
            problems.append(f"{key}: episode seeds {first}..{last} must lie in {EPISODE_SEEDS[0]}..{EPISODE_SEEDS[1]}")
    if problems:
        raise ConfigError(problems)


def _settings(plugins: Any, info: dict, overrides: list[str], episodes: int | None, seed: int | None) -> tuple[Any, Any, Any]:
    import attrs

    from polx.executor import check_backend

    adapter, ev, ex = env_and_eval(plugins, info["run_config"], overrides)
    ev = attrs.evolve(ev, n_test=ev.n_test if episodes is None else episodes, test_start_seed=ev.test_start_seed if seed is None else seed)
    _check_seeds(ev)
    check_backend(ex)
    return adapter, ev, ex


def default_out(source: str | Path) -> Path:
    from polx.base.run_dir import unique_dir

    base = Path("eval") if is_server(source) else Path(source) / "eval"
    return unique_dir(base / _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))


def evaluate_policy(
    plugins: Any,
    source: str | Path,
    *,
    runtime: str | None = None,
    episodes: int | None = None,
    seed: int | None = None,
    out: Path | None = None,
    overrides: Iterable[str] = (),
) -> dict:
    """Roll out the policy at ``source`` (a directory from ``polx export`` or a ``ws://`` server); returns ``metrics.json``'s dict."""
    from polx.eval.metrics import summarize
    from polx.base.paths import check_writable_dir

    server = is_server(source)
    if server and runtime is not None:
        raise UserInputError("--runtime applies to a policy directory; a server runs the runtime it was started with (polx serve --runtime)")
    runtime = runtime or "torch"
    if runtime not in artifact.RUNTIMES:
        raise UserInputError(f"--runtime {runtime!r} is unknown; choose one of: {', '.join(artifact.RUNTIMES)}")
    overrides = list(overrides)
    if not server:  # a bad directory, override or seed exits 2 before the policy loads
        info = artifact.read_config(Path(source))
        adapter, ev, ex = _settings(plugins, info, overrides, episodes, seed)
    out = Path(out) if out is not None else default_out(source)
    check_writable_dir(out, "--out")
    if (out / "metrics.json").exists():
        raise UserInputError(f"--out {str(out)!r} already holds a metrics.json; choose another directory")

    if server:
        from polx.deploy.client import PolicyClient

        policy = PolicyClient(str(source))
        info = policy.metadata
    else:
        from polx.deploy.load import load_policy

        policy = load_policy(Path(source), runtime, plugins=plugins)
    try:
        if server:
            adapter, ev, ex = _settings(plugins, info, overrides, episodes, seed)
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        try:
            done, images = _run_episodes(plugins, policy, source, runtime, adapter, ev, ex, out)
        except BaseException:
            if created:  # a failed evaluation leaves no half-filled directory behind
                shutil.rmtree(out, ignore_errors=True)
            raise
    finally:
        if server:
            policy.close()
    test = [done[("test", i)] for i in range(ev.n_test)]
    train = [done[("train", i)] for i in range(ev.n_train)]
    metrics = {**summarize("test", test), **summarize("train", train)}
    report = {
        "policy": str(source),
        "runtime": "websocket" if server else runtime,
        "global_step": info.get("global_step"),
        "weights": info.get("weights"),
        "n_test": ev.n_test,
        "test_start_seed": ev.test_start_seed,
        "n_train": ev.n_train,
        "train_start_seed": ev.train_start_seed,
        "metrics": metrics,
        "images": images,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    for key, value in metrics.items():
        if "/" not in key:
            print(f"{key}: {value:.4f}")
    print(f"metrics: {out / 'metrics.json'}", file=sys.stdout)
    return report


def _worker_policy(recipe: list, source: str, runtime: str) -> Any:
    """In a spawned worker: its own runtime of the policy (one thread) or its own server session."""
    if is_server(source):
        from polx.deploy.client import PolicyClient

        return PolicyClient(source)
    from polx.deploy.load import load_policy
    from polx.eval.rollout import load_recipe

    if runtime == "torch":
        import torch

        torch.set_num_threads(1)  # n_envs processes share the cores
    return load_policy(Path(source), runtime, threads=1, plugins=load_recipe(recipe))


def _run_episodes(plugins: Any, policy: Any, source: str | Path, runtime: str, adapter: Any, ev: Any, ex: Any, out: Path) -> tuple[dict, dict]:
    """``{(kind, index): Episode}`` and the drawn trajectories; one line per finished episode (a bar on a terminal)."""
    import functools

    from tqdm import tqdm

    from polx.eval.rollout import _draw, _EpisodeProgress, _render, plugin_recipe, run_episode, run_in_workers

    jobs = [("test", ev.test_start_seed + i, i) for i in range(ev.n_test)]
    jobs += [("train", ev.train_start_seed + i, i) for i in range(ev.n_train)]
    tty = sys.stderr.isatty()
    say = None if tty else (lambda line: print(f"polx: {line}", file=sys.stderr, flush=True))
    bar = _EpisodeProgress(len(jobs), tqdm(total=len(jobs), desc="rollout", unit="episode", disable=not tty, leave=False), say)
    with bar.bar:
        if ex.backend != "local" or (ev.n_envs > 1 and len(jobs) > 1):
            make = functools.partial(_worker_policy, plugin_recipe(plugins), str(source), runtime)
            done = run_in_workers(make, adapter, ev.max_steps, jobs, ev.n_envs, bar, stop_note="no metrics were written", exec_config=ex)
            return done, _draw(plugins, adapter, [done[("test", i)] for i in range(min(ev.n_vis, ev.n_test))], out)
        done: dict[tuple[str, int], Any] = {}
        images: dict[str, str] = {}
        env = adapter.make_env()
        try:
            for kind, seed, index in jobs:
                episode = run_episode(env, policy, seed, ev.max_steps, index)
                done[(kind, index)] = episode
                if kind == "test" and index < ev.n_vis:
                    images.update(_render(plugins, env, episode, out))
                bar.update(kind, episode)
        finally:
            env.close()
    return done, images
