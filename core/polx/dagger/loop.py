"""The DAgger run: stages on disk, each one finished before the next starts, so ``--resume`` is exact.

One run directory::

    dagger.yaml            the request (components, overrides, dagger.*, rounds, episodes, teacher)
    stages/round_000/      Phase I: a ``polx train`` run directory on the starting data or the unrolls
    stages/round_<r>/      round r's training, seeded with round r-1's latest checkpoint
    data/phase1.zarr       dagger.phase1=unrolls: the teacher's and its checkpoints' unrolls, labelled
    data/phase1.json       their figures (per source), written before the store appears
    data/round_<r>.zarr    all data after round r's rollouts (Phase I's + every round's)
    data/round_<r>.json    round r's collection figures (written before the store appears)
    data/rollouts_<r>.zarr a checkpoint teacher's round r: the rollouts with its observations
    rounds.json            the per-round table, one row per finished round
    logs.json.txt, media/score_by_round.png, summary.json

A stage is done when its artefact exists: Phase I's unrolls or a round's store (written aside
and renamed, so never half there; rollouts are never collected twice), a stage's
``summary.json`` (the trainer writes it last), a row in ``rounds.json``. A killed stage is
redone from its own last checkpoint. Each round's training is the trainer's ``--resume`` of a
directory holding the previous round's checkpoint with ``data.path``, ``train.max_steps`` and the
round's learning-rate schedule moved on, and its normaliser kept or refitted (``train_stage``);
weights, EMA and optimizer carry over unchanged.
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
import torch
import yaml

from polx.config import RunConfig
from polx.dagger.config import DaggerConfig, resolve_dagger_config, split_overrides
from polx.dagger.teacher import PolicySpec
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
    teacher: PolicySpec | None = None  # None: the env's scripted expert
    sources: list[PolicySpec] = attrs.Factory(list)  # phase1=unrolls: the teacher, then the intermediate checkpoints

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
    teacher: str | None = None,
) -> DaggerPlan:
    """Everything checked, nothing written (unless resuming). ``teacher``: ``expert`` (the default) or a
    polx checkpoint (a ``.ckpt`` file or a run directory)."""
    if resume_dir is not None:
        request = _read_request(Path(resume_dir))
        given = [flag for flag, value in (("--head", head), ("--env", env), ("--objective", objective), ("--dataset", dataset),
                                          ("--run-dir", run_dir), ("--teacher", teacher)) if value]  # fmt: skip
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
            "teacher": "expert" if teacher in (None, "expert") else str(Path(teacher).resolve()),
        }  # fmt: skip
        resume = False
    dagger = resolve_dagger_config([], base=request["dagger"])
    request.setdefault("teacher", "expert")  # runs started before --teacher existed
    if dagger.phase1 == "unrolls" and request["teacher"] == "expert":
        raise UserInputError("dagger.phase1=unrolls needs a policy teacher: pass --teacher CKPT (a polx checkpoint), or keep dagger.phase1=dataset")
    if dagger.phase1 == "unrolls" and dataset is not None and resume_dir is None:
        raise UserInputError("--dataset is Phase I's data with dagger.phase1=dataset; with dagger.phase1=unrolls Phase I trains on the teacher's unrolls: drop one")
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
            "to label the policy's states, or with --teacher CKPT to record them as dataset rows (see 'Experts' in "
            "docs/plugin_hooks.md); choose an env that has one (pusht, roboimi)"
        )
    spec, sources = None, []
    if request["teacher"] != "expert":
        from polx.dagger.teacher import intermediate_checkpoints, load_checkpoint_spec

        spec = load_checkpoint_spec(plugins, Path(request["teacher"]), adapter, config.components.env)
        if dagger.phase1 == "unrolls":
            others = intermediate_checkpoints(Path(spec.path), dagger.phase1_checkpoints)
            sources = [spec] + [load_checkpoint_spec(plugins, p, adapter, config.components.env, what="dagger.phase1_checkpoints") for p in others]
    if dagger.label == "auto":  # resolved once, and recorded so that --resume keeps it
        dagger = attrs.evolve(dagger, label="step" if _chunk_problems(spec, config) else "chunk")
        request["dagger"] = attrs.asdict(dagger)
        if spec is not None and not resume:  # the scripted expert labels steps, nothing to say
            why = "the teacher's windows match the student's" if dagger.label == "chunk" else "; ".join(_chunk_problems(spec, config))
            _say(f"dagger.label=auto: the teacher labels with {dagger.label} ({why})")
    if dagger.label == "chunk":
        _check_chunk_labels(dagger, spec, config)
    if dagger.phase1 == "unrolls":
        layout = _recorded_layout(adapter, config)
    else:
        layout = _check_layout(adapter, config, _dataset_path(adapter, config), plugins.registry)
    if dagger.label == "chunk":  # a starting dataset's steps get their own future as chunks (_collected_store)
        from polx.data.dataset import CHUNK_KEY

        layout[CHUNK_KEY] = ((config.policy.horizon, *adapter.shape_meta["action"]["shape"]), "float32")
    return DaggerPlan(plugins=plugins, run_dir=run_dir, resume=resume, request=request, train_config=config,
                      dagger=dagger, adapter=adapter, layout=layout, argv=list(argv or []), teacher=spec, sources=sources)  # fmt: skip


def _check_chunk_labels(dagger: DaggerConfig, spec: Any, config: RunConfig) -> None:
    """``dagger.label=chunk``: every step of the data must carry a teacher chunk aligned as the student's windows."""
    problems = _chunk_problems(spec, config)
    if problems:
        raise UserInputError("dagger.label=chunk: " + "; ".join(problems) + " (or use dagger.label=step)")


def _chunk_problems(spec: Any, config: RunConfig) -> list[str]:
    """Why the teacher cannot label whole chunks for this student ([] when it can)."""
    if spec is None:
        return ["it needs a checkpoint teacher (--teacher CKPT), not the scripted expert"]
    theirs, ours = spec.config.policy, config.policy
    return [f"the teacher's policy.{key} is {getattr(theirs, key)} and the student's {getattr(ours, key)}; they must agree"
            for key in ("horizon", "n_obs_steps") if getattr(theirs, key) != getattr(ours, key)]  # fmt: skip


def _read_request(run_dir: Path) -> dict:
    path = run_dir / "dagger.yaml"
    if not path.is_file():
        raise UserInputError(f"--resume {str(run_dir)!r} is not a polx dagger run directory (no dagger.yaml)")
    return yaml.safe_load(path.read_text())


def _dataset_path(adapter: Any, config: RunConfig) -> Path:
    if config.data.path is not None:
        return Path(config.data.path)
    return Path(adapter.default_dataset(progress=config.train.progress))


def _starting_data(plan: DaggerPlan) -> Path:
    """Phase I's data: the teacher's unrolls (``data/phase1.zarr``) or the starting dataset."""
    if plan.dagger.phase1 == "unrolls":
        return plan.run_dir / "data" / "phase1.zarr"
    return _dataset_path(plan.adapter, plan.train_config)


def _starting_format(plan: DaggerPlan) -> str:
    return "zarr" if plan.dagger.phase1 == "unrolls" else plan.train_config.data.format


def _recorded_layout(adapter: Any, config: RunConfig) -> dict:
    """Phase I from unrolls: the arrays are whatever the expert's ``record`` gives, if ``dataset_obs`` can train on them."""
    env, expert = adapter.make_env(), adapter.make_expert()
    try:
        env.reset(seed=0)
        expert.reset()
        row = {key: np.asarray(value) for key, value in expert.record(env).items()}
        row["action"] = np.zeros(tuple(adapter.shape_meta["action"]["shape"]), np.float32)
    finally:
        env.close()
    try:
        adapter.dataset_obs({key: value[None] for key, value in row.items()})
    except DatasetError as exc:
        raise DatasetError(f"env {config.components.env!r}: its expert's record() rows cannot be trained on: {exc}") from None
    return {key: (tuple(value.shape), str(value.dtype)) for key, value in row.items()}


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
    if plan.train_config.train.threads is not None:  # collection in this process too, not only training
        torch.set_num_threads(plan.train_config.train.threads)
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
        row.update(beta=None, episodes_added=0, steps_added=0, disagreement_rate=None, rollout_mean_score=None, rollout_success_rate=None)
        if plan.dagger.phase1 == "unrolls":
            data = _phase1_store(plan)
            figures = json.loads(data.with_suffix(".json").read_text())
            row.update({k: v for k, v in figures.items() if not isinstance(v, (list, dict))})
            _say("Phase I: training on the teacher's unrolls")
        else:
            _say("Phase I: training on the starting data")
            data = _starting_data(plan)
    else:
        data = _collected_store(plan, round_)
        row.update(json.loads(data.with_suffix(".json").read_text()))
    stage = train_stage(plan, round_, data)
    summary = json.loads((stage / "summary.json").read_text())
    metrics = summary.get("metrics", {})
    from polx.data.formats import open_dataset

    rb = open_dataset(data, _starting_format(plan) if round_ == PHASE_ONE else "zarr", registry=plan.plugins.registry)
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
    from polx.data.dataset import CHUNK_KEY, chunks_from_actions
    from polx.data.formats import load_arrays, open_dataset
    from polx.data.replay_buffer import ReplayBuffer

    data_dir = plan.run_dir / "data"
    store = data_dir / f"round_{round_:03d}.zarr"
    if store.exists():
        return store
    for partial in data_dir.glob(f".{store.name}.partial-*"):  # left by a kill while writing
        shutil.rmtree(partial, ignore_errors=True)
    previous = data_dir / f"round_{round_ - 1:03d}.zarr" if round_ > 1 else _starting_data(plan)
    beta = plan.dagger.beta_at(round_)
    seeds = plan.dagger.seeds(round_, plan.episodes)
    who = "the expert" if plan.teacher is None else f"the teacher (step {plan.teacher.step})"
    _say(f"round {round_}/{plan.rounds}: rolling out the policy on seeds {seeds[0]}..{seeds[-1]} (beta {beta:.3f}), {who} labelling every step")
    config = plan.train_config
    policy = _load_policy(plan, stage_dir(plan, round_ - 1))
    episodes = collect(
        plan.plugins, config, plan.adapter, policy, seeds, beta=beta, teacher=plan.teacher,
        max_steps=plan.dagger.max_steps or config.eval.max_steps, threshold=plan.dagger.disagreement, progress=config.train.progress,
    )  # fmt: skip
    steps = sum(e.steps for e in episodes)
    labels = torch.as_tensor(np.concatenate([e.arrays["action"] for e in episodes]), dtype=torch.float32)
    outside = (policy.normalizer.normalize("action", labels).abs() > 1.0).any(dim=-1).float().mean().item()
    figures = {
        "beta": beta,
        "episodes_added": len(episodes),
        "steps_added": steps,
        "disagreement_rate": sum(e.disagreements for e in episodes) / steps,
        "teacher_step_share": sum(e.teacher_steps for e in episodes) / steps,
        "label_ms_per_step": 1000 * sum(e.label_seconds for e in episodes) / steps,
        "labels_outside_normalizer": outside,  # share of the new labels beyond the student's normaliser limits
        "rollout_mean_score": float(np.mean([e.max_reward for e in episodes])),
        "rollout_success_rate": float(np.mean([e.success for e in episodes])),
    }
    if plan.teacher is not None:  # the labelled rollouts as collected, with the teacher's own observations
        rollouts = data_dir / f"rollouts_{round_:03d}.zarr"
        for stale in [rollouts, *data_dir.glob(f".{rollouts.name}.partial-*")]:  # a kill after it, before the round's store
            shutil.rmtree(stale, ignore_errors=True)
        write_episodes(rollouts, episodes, plan.layout, teacher_keys=True, round_=round_)
    _say(f"round {round_}/{plan.rounds}: writing {store} (+{len(episodes)} episodes, +{steps} steps)")
    source = open_dataset(previous, _starting_format(plan) if round_ == 1 else "zarr", registry=plan.plugins.registry)  # the starting data: any format
    keys = list(plan.layout)
    with ReplayBuffer.writer(store) as rb:
        arrays = load_arrays(source, [k for k in keys if k != CHUNK_KEY or k in source.keys()])
        if CHUNK_KEY in keys and CHUNK_KEY not in arrays:  # a starting dataset: each step's own demonstrated future
            policy = plan.train_config.policy
            arrays[CHUNK_KEY] = chunks_from_actions(arrays["action"], source.episode_ends, horizon=policy.horizon, n_obs_steps=policy.n_obs_steps)
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


def _phase1_store(plan: DaggerPlan) -> Path:
    """``data/phase1.zarr``: ``dagger.phase1_unrolls`` episodes driven by each source (the teacher, then
    ``phase1_checkpoints``), every step labelled by the teacher; collected once, written atomically."""
    from polx.dagger.collect import collect_unrolls

    store = plan.run_dir / "data" / "phase1.zarr"
    if store.exists():
        return store
    for partial in store.parent.glob(f".{store.name}.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)
    d, config = plan.dagger, plan.train_config
    seeds = d.phase1_seeds(len(plan.sources))
    _say(f"Phase I: {d.phase1_unrolls} unrolls from each of {len(plan.sources)} sources (the teacher and {len(plan.sources) - 1} "
         f"intermediate checkpoints), seeds {seeds[0][0]}..{seeds[-1][-1]}, the teacher labelling every step")  # fmt: skip
    episodes = collect_unrolls(
        plan.plugins, config, plan.adapter, plan.sources, plan.teacher, seeds,
        max_steps=d.max_steps or config.eval.max_steps, threshold=d.disagreement, progress=config.train.progress, trim=d.unroll_trim,
    )  # fmt: skip
    steps = sum(e.steps for e in episodes)
    per_source = []
    for index, spec in enumerate(plan.sources):
        mine = [e for e in episodes if e.source == index]
        per_source.append({"checkpoint": spec.path, "step": spec.step, "episodes": len(mine), "steps": sum(e.steps for e in mine),
                           "mean_score": float(np.mean([e.max_reward for e in mine])), "success_rate": float(np.mean([e.success for e in mine]))})  # fmt: skip
        _say(f"Phase I: source {index} (step {spec.step}): mean score {per_source[-1]['mean_score']:.3f} over {len(mine)} unrolls")
    figures = {
        "phase1_episodes": len(episodes),
        "phase1_steps": steps,
        "label_ms_per_step": 1000 * sum(e.label_seconds for e in episodes) / steps,
        "disagreement_rate": sum(e.disagreements for e in episodes) / steps,
        "rollout_mean_score": float(np.mean([e.max_reward for e in episodes])),
        "rollout_success_rate": float(np.mean([e.success for e in episodes])),
        "sources": per_source,
    }
    write_episodes(store, episodes, plan.layout, teacher_keys=True, figures=figures)
    return store


SOURCE_KEY = "dagger_source"  # Phase I unrolls: which source drove the step (0: the teacher)


def write_episodes(store: Path, episodes: list, layout: dict, *, teacher_keys: bool, round_: int = 0, figures: dict | None = None) -> None:
    """Labelled episodes as a replay buffer: the layout's arrays (``DaggerPlan.layout``), the teacher's
    observations (``teacher_keys``), the source and the round; ``figures`` go to ``<store>.json`` first,
    so a store that exists always has them. Public for ``benchmarks/bench_dagger.py``'s BC arm."""
    from polx.dagger.teacher import TEACHER_PREFIX
    from polx.data.replay_buffer import ReplayBuffer

    with ReplayBuffer.writer(store) as rb:
        for episode in episodes:
            rows = {k: episode.arrays[k].astype(dtype) for k, (_, dtype) in layout.items()}
            if teacher_keys:
                rows.update({k: v for k, v in episode.arrays.items() if k.startswith(TEACHER_PREFIX)})
            rows[SOURCE_KEY] = np.full((episode.steps, 1), episode.source, np.int32)
            rows[ROUND_KEY] = np.full((episode.steps, 1), round_, np.int32)
            rb.add_episode(rows)
        if figures is not None:
            _write_atomic(store.with_suffix(".json"), dumps_flagged(figures, what=store.with_suffix(".json").name, indent=2) + "\n")


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

    Round r > 0 resumes round r-1's latest checkpoint (weights, EMA, optimizer) with ``data.path``
    moved to ``data`` and ``train.max_steps`` to Phase I's plus r rounds' budget. The normaliser
    is kept from Phase I (``dagger.normalizer=keep``, the default) or refitted on ``data``
    (``refit``: its limits then cover what the rounds added, and the policy must relearn its
    scales). The learning rate (``dagger.schedule``): ``restart``
    gives the round its own schedule, ``dagger.round_warmup_steps`` of warmup to ``dagger.round_lr_scale * train.lr``
    and a cosine to ``train.min_lr`` at the round's last step (``train.schedule_start``);
    ``stretch`` stretches Phase I's cosine over the new ``max_steps``, so each round starts a
    little above where the last one ended. Public so that ``benchmarks/bench_dagger.py`` trains
    its behaviour-cloning and control arms exactly the same way."""
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
        dataset = data if plan.dagger.phase1 == "unrolls" else (Path(r["dataset"]) if r["dataset"] else None)
        training = prepare_training(plan.plugins, head=r["head"], env=r["env"], objective=r["objective"], loggers=tuple(r["loggers"]),
                                    dataset=dataset, run_dir=stage, overrides=r["overrides"], argv=plan.argv)  # fmt: skip
    else:
        if not latest.is_file():  # seed the round with the previous round's checkpoint
            previous = stage_dir(plan, round_ - 1)
            saved = read_run_config(previous)
            path_value = yaml.safe_dump(str(data)).splitlines()[0]
            seeded = config_from_saved(plan.plugins, saved, [f"data.path={path_value}", "data.format=zarr", f"train.max_steps={budget}", *_schedule(plan, budget)])
            (stage / "checkpoints").mkdir(parents=True)
            _write_atomic(stage / "config.yaml", seeded.to_yaml())
            checkpoint = _seed_checkpoint(plan, seeded, data, (previous / "checkpoints" / LATEST).read_bytes())
            atomic_write(latest, lambda f: f.write(checkpoint))  # last: a stage with latest.ckpt is seeded
        training = prepare_training(plan.plugins, head=None, env=None, resume_dir=stage, argv=plan.argv)
    run_training(training)
    return stage


def _schedule(plan: DaggerPlan, budget: int) -> list[str]:
    """The training overrides of a round's learning-rate schedule (see ``train_stage``)."""
    t, d = plan.train_config.train, plan.dagger
    if d.schedule == "stretch":
        return [f"train.lr={t.lr!r}", f"train.warmup_steps={t.warmup_steps}", "train.schedule_start=0"]
    lr = t.lr * d.round_lr_scale
    return [f"train.lr={lr!r}", f"train.min_lr={min(t.min_lr, lr)!r}", f"train.warmup_steps={min(d.round_warmup_steps, d.steps_per_round)}",
            f"train.schedule_start={budget - d.steps_per_round}"]  # fmt: skip


def _seed_checkpoint(plan: DaggerPlan, config: RunConfig, data: Path, checkpoint: bytes) -> bytes:
    """The previous round's ``checkpoint`` made the start of a round on ``data``: its saved config is
    the round's own ``config`` (so resuming it is not a resume on moved data, which the trainer
    would warn about), and with ``dagger.normalizer=refit`` its normaliser (trained and EMA weights)
    is fitted on ``data``'s training episodes, as the trainer fits a new run's."""
    import io

    from polx.train.data import load_training_data

    state = torch.load(io.BytesIO(checkpoint), map_location="cpu", weights_only=True)
    state["config"] = config.to_dict()
    if plan.dagger.normalizer == "refit":
        normalizer = load_training_data(data, plan.adapter, config, plan.plugins.registry).normalizer
        fitted = {f"normalizer.{k}": v.detach().cpu() for k, v in normalizer.state_dict().items()}
        for weights in (state["model"], *([state["ema"]["model"]] if state.get("ema") is not None else [])):
            missing = fitted.keys() - weights.keys()
            if missing:
                raise DatasetError(f"{str(data)!r}: the refitted normaliser has keys the policy lacks ({', '.join(sorted(missing))})")
            weights.update(fitted)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


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

