"""The DAgger run: stages on disk, each one finished before the next starts, so ``--resume`` is exact.

One run directory::

    dagger.yaml            the request (components, overrides, dagger.*, rounds, episodes)
    stages/round_000/      Phase I: a ``polx train`` run directory on the starting data
    stages/round_<r>/      round r's training, seeded with round r-1's latest checkpoint
    data/round_<r>.zarr    all data after round r's rollouts (starting data + every round's)
    data/round_<r>.json    round r's collection figures (written before the store appears)
    rounds.json            the per-round table, one row per finished round
    logs.json.txt, media/score_by_round.png, summary.json

A stage is done when its artefact exists: a round's store (written aside and renamed, so never
half there; its rollouts are never collected twice), a stage's ``summary.json`` (the trainer
writes it last), a row in ``rounds.json``. A killed stage is redone from its own last
checkpoint. Each round's training is the trainer's ``--resume`` of a directory holding the
previous round's checkpoint with ``data.path`` and ``train.max_steps`` moved on, so weights,
EMA, optimizer and normalizer (fitted on the starting data) carry over unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import yaml

from polx.config import RunConfig
from polx.dagger.config import DaggerConfig, resolve_dagger_config, split_overrides
from polx.errors import DatasetError, UserInputError
from polx.plugins import PolxPlugins
from polx.runs import config_from_saved, prepare_training, read_run_config, run_dir_name
from polx.strictjson import dumps_flagged

ROUND_KEY = "dagger_round"  # per-step array: 0 for the starting data, r for round r's rollouts
PHASE_ONE = 0


@attrs.define(kw_only=True)
class DaggerPlan:
    """What ``polx dagger`` will do; nothing is on disk yet unless ``resume``."""

    plugins: PolxPlugins
    run_dir: Path
    resume: bool
    request: dict  # what dagger.yaml holds
    train_config: RunConfig  # Phase I's resolved config
    dagger: DaggerConfig
    adapter: Any
    layout: dict[str, tuple[tuple[int, ...], str]]  # raw array -> (per-step shape, dtype) of the aggregated data
    argv: list[str]

    @property
    def rounds(self) -> int:
        return int(self.request["rounds"])

    @property
    def episodes(self) -> int:
        return int(self.request["episodes"])


# ---------------------------------------------------------------------------------------------
# validation: everything the user can get wrong, before anything is written


def prepare_dagger(
    plugins: PolxPlugins,
    *,
    head: str | None,
    env: str | None,
    objective: str | None = None,
    dataset: Path | None = None,
    rounds: int | None = None,
    episodes: int | None = None,
    loggers: tuple[str, ...] = (),
    out: Path = Path("runs"),
    run_dir: Path | None = None,
    resume_dir: Path | None = None,
    overrides: tuple[str, ...] = (),
    argv: list[str] | None = None,
) -> DaggerPlan:
    if resume_dir is not None:
        request = _read_request(Path(resume_dir))
        given = [flag for flag, value in (("--head", head), ("--env", env), ("--objective", objective), ("--dataset", dataset), ("--run-dir", run_dir)) if value]
        if given or overrides or loggers:
            raise UserInputError(
                f"--resume continues {str(resume_dir)!r} exactly as it was started; drop {', '.join(given) or 'the KEY=VALUE overrides and --logger'} "
                "(only --rounds may be raised)"
            )
        if episodes is not None and episodes != request["episodes"]:
            raise UserInputError(f"--episodes: the run collects {request['episodes']} per round; drop --episodes or start a new run")
        if rounds is not None:
            request = {**request, "rounds": rounds}
        run_dir, resume = Path(resume_dir), True
    else:
        if rounds is None or episodes is None:
            raise UserInputError("--rounds and --episodes are required (e.g. --rounds 5 --episodes 20), unless --resume")
        dagger_overrides, train_overrides = split_overrides(overrides)
        request = {
            "head": head, "env": env, "objective": objective, "dataset": str(dataset) if dataset else None,
            "loggers": list(loggers), "overrides": train_overrides,
            "dagger": attrs.asdict(resolve_dagger_config(dagger_overrides)), "rounds": rounds, "episodes": episodes,
        }  # fmt: skip
        resume = False
    dagger = resolve_dagger_config([], base=request["dagger"])
    stage0 = prepare_training(
        plugins,
        head=request["head"],
        env=request["env"],
        objective=request["objective"],
        dataset=Path(request["dataset"]) if request["dataset"] else None,
        loggers=tuple(request["loggers"]),
        overrides=request["overrides"],
        dry_call=not resume,  # the head and objective called once before the run directory exists
    )
    config = stage0.config
    if not (config.eval.at_end and config.eval.n_test >= 1):
        raise UserInputError("polx dagger scores every round on the test seeds: keep eval.at_end=true and eval.n_test >= 1")
    if not resume:
        run_dir = Path(run_dir) if run_dir is not None else Path(out) / run_dir_name(config).with_name(run_dir_name(config).name + "_dagger")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserInputError(f"--run-dir {str(run_dir)!r} exists and is not empty; use --resume to continue it")
    elif request["rounds"] < len(_read_table(run_dir)) - 1:
        raise UserInputError(f"--rounds {request['rounds']}: the run has already finished {len(_read_table(run_dir)) - 1} rounds")
    adapter = plugins.build_env(config)
    if not callable(getattr(adapter, "make_expert", None)):
        raise UserInputError(
            f"env {config.components.env!r} offers no expert (its adapter has no make_expert()); polx dagger needs one "
            "to label the policy's states (see 'Experts' in docs/plugin_hooks.md), or choose an env that has one (pusht, roboimi)"
        )
    layout = _check_layout(adapter, config, _starting_data(adapter, config), plugins.registry)
    return DaggerPlan(plugins=plugins, run_dir=run_dir, resume=resume, request=request, train_config=config,
                      dagger=dagger, adapter=adapter, layout=layout, argv=list(argv or []))  # fmt: skip


def _read_request(run_dir: Path) -> dict:
    path = run_dir / "dagger.yaml"
    if not path.is_file():
        raise UserInputError(f"--resume {str(run_dir)!r} is not a polx dagger run directory (no dagger.yaml)")
    return yaml.safe_load(path.read_text())


def _starting_data(adapter: Any, config: RunConfig) -> Path:
    if config.data.path is not None:
        return Path(config.data.path)
    return Path(adapter.default_dataset(progress=config.train.progress))


def _check_layout(adapter: Any, config: RunConfig, start: Path, registry: Any) -> dict:
    """The aggregated data's arrays: the starting data's that the expert also records, same shapes.

    Fails (exit 2) when the starting data does not fit the env, or when those arrays are not
    enough for the env's own ``dataset_obs``: then DAgger could not train on what it writes.
    """
    from polx.data.dataset import load_policy_arrays
    from polx.data.formats import open_dataset

    arrays, _ = load_policy_arrays(start, adapter, fmt=config.data.format, registry=registry)
    for key, spec in {**adapter.shape_meta["obs"], "action": adapter.shape_meta["action"]}.items():
        expected = tuple(spec["shape"])
        if spec.get("type") == "rgb":
            expected = (*expected[1:], expected[0])  # stored HWC
        if tuple(arrays[key].shape[1:]) != expected:
            raise DatasetError(
                f"dataset {str(start)!r}: {key} has per-step shape {tuple(arrays[key].shape[1:])}; env {config.components.env!r} "
                f"with this config needs {expected} (choose a matching --dataset or env.* options)"
            )
    env, expert = adapter.make_env(), adapter.make_expert()
    try:
        env.reset(seed=0)
        expert.reset()
        row = {key: np.asarray(value) for key, value in expert.record(env).items()}
        row["action"] = np.asarray(expert.act(env), dtype=np.float32)
    finally:
        env.close()
    rb = open_dataset(start, config.data.format, registry=registry)  # any format; the rounds' stores are zarr
    layout = {}
    for key in rb.keys():
        if key in row:
            shape, dtype = rb.array_info(key)
            if tuple(shape[1:]) != row[key].shape:
                raise DatasetError(
                    f"dataset {str(start)!r}: data/{key} has per-step shape {tuple(shape[1:])}, but env "
                    f"{config.components.env!r} records {row[key].shape}; choose a matching --dataset or env.* options"
                )
            layout[key] = (tuple(shape[1:]), str(dtype))
    try:
        adapter.dataset_obs({key: row[key][None].astype(dtype) for key, (_, dtype) in layout.items()})
    except DatasetError as exc:
        raise DatasetError(f"dataset {str(start)!r} and the expert's records share only {', '.join(sorted(layout))}: {exc}") from None
    return layout


# ---------------------------------------------------------------------------------------------
# the run


def run_dagger(plan: DaggerPlan) -> Path:
    """Phase I, then each round: collect, aggregate, train, evaluate, log. Returns the run directory."""
    from polx import logdispatch
    from polx.components import Run

    run_dir = plan.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "dagger.yaml", yaml.safe_dump(plan.request, sort_keys=False))
    table = _read_table(run_dir)
    config = plan.train_config
    run = Run(dir=run_dir, name=run_dir.name, config={**config.to_dict(), "dagger": plan.request["dagger"]},
              resumed=plan.resume, resume_step=(table[-1]["round"] if table else -1) if plan.resume else None)  # fmt: skip
    logdispatch.open_loggers(plan.plugins, run, config)
    _say(f"{'resuming' if plan.resume else 'starting'} {plan.rounds} rounds of {plan.episodes} episodes in {run_dir}")
    try:
        for round_ in range(PHASE_ONE, plan.rounds + 1):
            if round_ < len(table):
                continue  # finished and logged before
            row, images = _run_round(plan, round_)
            logged = {key: value for key, value in row.items() if value is not None}  # Phase I has no beta, no rollouts
            logdispatch.log(plan.plugins, run, round_, logged, images)
            table.append(row)
            _write_atomic(run_dir / "rounds.json", dumps_flagged(table, what="rounds.json", indent=2) + "\n")
    finally:
        logdispatch.close_loggers(run)
    return _report(plan, table)


def _run_round(plan: DaggerPlan, round_: int) -> tuple[dict, dict]:
    """Round 0 is Phase I; round r collects (unless its store exists), then trains and evaluates."""
    row: dict[str, Any] = {"round": round_}
    if round_ == PHASE_ONE:
        _say("Phase I: training on the starting data")
        data = _starting_data(plan.adapter, plan.train_config)
        row.update(beta=None, episodes_added=0, steps_added=0, disagreement_rate=None, rollout_mean_score=None, rollout_success_rate=None)
    else:
        data = _collected_store(plan, round_)
        row.update(json.loads(data.with_suffix(".json").read_text()))
    stage = train_stage(plan, round_, data)
    summary = json.loads((stage / "summary.json").read_text())
    metrics = summary.get("metrics", {})
    from polx.data.formats import open_dataset

    rb = open_dataset(data, plan.train_config.data.format if round_ == PHASE_ONE else "zarr", registry=plan.plugins.registry)
    row.update(
        train_steps=int(summary["global_step"]),
        dataset_episodes=len(rb.episode_ends),
        dataset_steps=int(rb.episode_ends[-1]),
        test_mean_score=metrics.get("test_mean_score"),
        test_success_rate=metrics.get("test_success_rate"),
    )
    shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if v is not None and k != "round")
    _say(f"round {round_}/{plan.rounds}: {shown}")
    return row, _trajectory_images(stage)


def _collected_store(plan: DaggerPlan, round_: int) -> Path:
    """``data/round_<r>.zarr``: the previous data plus round r's labelled rollouts (collected once)."""
    from polx.dagger.collect import collect
    from polx.data.formats import load_arrays, open_dataset
    from polx.data.replay_buffer import ReplayBuffer

    data_dir = plan.run_dir / "data"
    store = data_dir / f"round_{round_:03d}.zarr"
    if store.exists():
        return store
    for partial in data_dir.glob(f".{store.name}.partial-*"):  # left by a kill while writing
        shutil.rmtree(partial, ignore_errors=True)
    previous = data_dir / f"round_{round_ - 1:03d}.zarr" if round_ > 1 else _starting_data(plan.adapter, plan.train_config)
    beta = plan.dagger.beta_at(round_)
    seeds = plan.dagger.seeds(round_, plan.episodes)
    _say(f"round {round_}/{plan.rounds}: rolling out the policy on seeds {seeds[0]}..{seeds[-1]} (beta {beta:.3f}), the expert labelling every step")
    config = plan.train_config
    policy = _load_policy(plan, stage_dir(plan, round_ - 1))
    episodes = collect(
        plan.plugins, config, plan.adapter, policy, seeds, beta=beta,
        max_steps=plan.dagger.max_steps or config.eval.max_steps, threshold=plan.dagger.disagreement, progress=config.train.progress,
    )  # fmt: skip
    steps = sum(e.steps for e in episodes)
    figures = {
        "beta": beta,
        "episodes_added": len(episodes),
        "steps_added": steps,
        "disagreement_rate": sum(e.disagreements for e in episodes) / steps,
        "expert_step_share": sum(e.expert_steps for e in episodes) / steps,
        "rollout_mean_score": float(np.mean([e.max_reward for e in episodes])),
        "rollout_success_rate": float(np.mean([e.success for e in episodes])),
    }
    _say(f"round {round_}/{plan.rounds}: writing {store} (+{len(episodes)} episodes, +{steps} steps)")
    source = open_dataset(previous, plan.train_config.data.format if round_ == 1 else "zarr", registry=plan.plugins.registry)  # the starting data: any format
    keys = list(plan.layout)
    with ReplayBuffer.writer(store) as rb:
        arrays = load_arrays(source, keys)
        n_steps = int(source.episode_ends[-1])
        rounds = load_arrays(source, [ROUND_KEY])[ROUND_KEY] if ROUND_KEY in source.keys() else np.zeros((n_steps, 1), np.int32)
        starts = np.concatenate([[0], source.episode_ends[:-1]])
        for start, end in zip(starts, source.episode_ends):
            rb.add_episode({**{k: arrays[k][start:end] for k in keys}, ROUND_KEY: rounds[start:end]})
        for episode in episodes:
            rows = {k: episode.arrays[k].astype(plan.layout[k][1]) for k in keys}
            rb.add_episode({**rows, ROUND_KEY: np.full((episode.steps, 1), round_, np.int32)})
        _write_atomic(store.with_suffix(".json"), dumps_flagged(figures, what=store.with_suffix(".json").name, indent=2) + "\n")  # before the store appears
    if round_ > 1:  # everything in it is in the new store; round r-1's training is finished
        shutil.rmtree(previous, ignore_errors=True)
    return store


def _load_policy(plan: DaggerPlan, stage: Path):
    """The evaluation (EMA) weights of ``stage``'s latest checkpoint, on the training device."""
    from polx.data.normalizer import Normalizer
    from polx.policy.policy import build_policy
    from polx.base.checkpoint import LATEST, load_checkpoint, model_state_from
    from polx.base.device import resolve_device

    weights = model_state_from(load_checkpoint(stage / "checkpoints" / LATEST))
    config = plan.train_config
    policy = build_policy(plan.plugins, config, plan.adapter.shape_meta, Normalizer.from_state_dict(weights, prefix="normalizer."))
    policy.load_state_dict(weights)
    return policy.to(resolve_device(config.train.device))


def stage_dir(plan: DaggerPlan, round_: int) -> Path:
    """Round ``round_``'s training directory (0: Phase I)."""
    return plan.run_dir / "stages" / f"round_{round_:03d}"


def train_stage(plan: DaggerPlan, round_: int, data: Path) -> Path:
    """Train round ``round_``'s stage to its step budget (or find it trained); returns its directory.

    Round r > 0 resumes round r-1's latest checkpoint (weights, EMA, optimizer, normalizer) with
    ``data.path`` moved to ``data`` and ``train.max_steps`` to Phase I's plus r rounds' budget; the
    learning-rate schedule is the trainer's over the new ``max_steps``, so each round starts a
    little above where the last one ended and decays again (a warm restart). Public so that
    ``benchmarks/bench_dagger.py`` trains its behaviour-cloning arm exactly the same way."""
    from polx.base.checkpoint import LATEST, atomic_write
    from polx.train.trainer import run_training

    stage = stage_dir(plan, round_)
    config = plan.train_config
    budget = config.train.max_steps + round_ * plan.dagger.steps_per_round
    summary = stage / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("global_step") == budget:
        return stage
    latest = stage / "checkpoints" / LATEST
    if not latest.is_file():
        shutil.rmtree(stage, ignore_errors=True)  # started but never checkpointed: nothing to keep
    if round_ == PHASE_ONE and not latest.is_file():
        r = plan.request
        training = prepare_training(plan.plugins, head=r["head"], env=r["env"], objective=r["objective"], loggers=tuple(r["loggers"]),
                                    dataset=Path(r["dataset"]) if r["dataset"] else None, run_dir=stage, overrides=r["overrides"], argv=plan.argv)  # fmt: skip
    else:
        if not latest.is_file():  # seed the round with the previous round's checkpoint
            previous = stage_dir(plan, round_ - 1)
            saved = read_run_config(previous)
            path_value = yaml.safe_dump(str(data)).splitlines()[0]
            seeded = config_from_saved(plan.plugins, saved, [f"data.path={path_value}", "data.format=zarr", f"train.max_steps={budget}"])
            (stage / "checkpoints").mkdir(parents=True)
            _write_atomic(stage / "config.yaml", seeded.to_yaml())
            checkpoint = (previous / "checkpoints" / LATEST).read_bytes()
            atomic_write(latest, lambda f: f.write(checkpoint))  # last: a stage with latest.ckpt is seeded
        training = prepare_training(plan.plugins, head=None, env=None, resume_dir=stage, argv=plan.argv)
    run_training(training)
    return stage


def _trajectory_images(stage: Path) -> dict[str, str]:
    """The PNGs of the stage's last evaluation rollout, keyed as the trainer's rollouts are."""
    rollouts = sorted((stage / "media").glob("rollout_*"), key=lambda p: int(p.name.split("_")[1]) if p.name.split("_")[1].isdigit() else -1)
    if not rollouts:
        return {}
    return {f"test/trajectory_{p.stem.split('_')[1]}": str(p) for p in sorted(rollouts[-1].glob("episode_*.png"))}


def _read_table(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "rounds.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _report(plan: DaggerPlan, table: list[dict]) -> Path:
    """``summary.json`` with the per-round table and ``media/score_by_round.png``."""
    run_dir = plan.run_dir
    png = _plot_scores(table, run_dir / "media" / "score_by_round.png")
    summary = {"status": "finished", "rounds": plan.rounds, "episodes_per_round": plan.episodes, "table": table, "final": table[-1]}
    _write_atomic(run_dir / "summary.json", dumps_flagged(summary, what="summary.json", indent=2) + "\n")
    lines = [f"polx dagger: finished {plan.rounds} rounds in {run_dir}", "  round  steps  episodes  data steps  disagree  test_mean_score  success"]
    for row in table:
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
        lines.append(f"  {row['round']:>5}  {row['train_steps']:>5}  {row['dataset_episodes']:>8}  {row['dataset_steps']:>10}  "
                     f"{fmt(row['disagreement_rate'], '8.3f'):>8}  {fmt(row['test_mean_score'], '15.3f'):>15}  {fmt(row['test_success_rate'], '.2f'):>7}")  # fmt: skip
    lines += [f"  summary  {run_dir / 'summary.json'}", f"  plot     {png}"]
    print("\n".join(lines), file=sys.stderr)
    return run_dir


def _plot_scores(table: list[dict], out: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    for key, label in (("test_mean_score", "test_mean_score"), ("test_success_rate", "success rate")):
        points = [(row["round"], row[key]) for row in table if row.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set_xlabel("round (0: Phase I)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    fig.savefig(tmp, dpi=100, format="png")
    os.replace(tmp, out)
    return out


def _write_atomic(path: Path, text: str) -> None:
    from polx.base.checkpoint import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode()))


def _say(message: str) -> None:
    print(f"polx dagger: {message}", file=sys.stderr, flush=True)

