"""DAgger against behaviour cloning on PushT keypoints, at equal expert labels and equal training steps.

Both arms start from the same Phase I (one training run on ``--start-episodes`` scripted-expert
demonstrations). Then, round after round:

- DAgger (``polx dagger``) rolls its policy out on ``--episodes`` fresh seeds and adds every visited
  step, labelled by the expert, to its data;
- BC adds scripted-expert demonstrations from other fresh seeds until it holds at least as many
  labelled steps as DAgger does after that round (whole episodes, so BC gets slightly more);
- the control adds nothing: it trains on the Phase I data alone (``--no-control`` skips it), so a
  change in score that the control shows too comes from the extra training, not from the labels;

and each continues training for ``--steps-per-round`` steps from its previous round's
checkpoint on all its data, scored on the 50 test seeds (eval.n_test). Also reported: how much
the labels jump from one step to the next (mean |a_t - a_{t-1}| and the share over 30 px), for
the Phase I data and for DAgger's relabelled episodes, since a teacher whose labels jump is hard
to imitate. Readable lines, then one JSON line. The full measurement is long (see ``--help``); a tiny run checks it end to end::

    python benchmarks/bench_dagger.py --tiny --out runs/bench_dagger
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from polx.dagger import prepare_dagger, run_dagger, stage_dir, train_stage  # BC trains its rounds as DAgger does
from polx.data.replay_buffer import ReplayBuffer
from polx.plugins import load_plugins

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "head.n_emb=32", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1", "train.max_steps=20", "train.batch_size=8",
    "train.val_every=0", "train.checkpoint_every=0", "eval.rollout_every=0", "eval.n_test=2", "eval.max_steps=30",
    "eval.n_vis=1", "env.demo_max_steps=60",
]  # fmt: skip


def write_prefix(out: Path, sources: list[tuple[ReplayBuffer, int]]) -> None:
    """A store holding the first ``n`` episodes of each source, in order, with the arrays they all have
    (the human demonstrations' low-dim store has no ``img``; generated demos always do)."""
    keys = sorted(set.intersection(*(set(source.keys()) for source, _ in sources)))
    with ReplayBuffer.writer(out) as rb:
        for source, n in sources:
            data, ends = source.load(keys), source.episode_ends
            starts = np.concatenate([[0], ends[:-1]])
            for lo, hi in list(zip(starts, ends))[:n]:
                rb.add_episode({key: value[lo:hi] for key, value in data.items()})


def label_jumps(store: Path) -> dict[str, dict]:
    """Step-to-step label jumps (px) within episodes, for the starting episodes (``dagger_round`` 0)
    and the relabelled ones (round > 0); ``python -c`` on a finished run's final store works too."""
    rb = ReplayBuffer.open(store)
    data, ends = rb.load(["action", "dagger_round"]), rb.episode_ends
    jumps: dict[str, list] = {"start": [], "relabelled": []}
    for lo, hi in zip(np.concatenate([[0], ends[:-1]]), ends):
        kind = "relabelled" if data["dagger_round"][lo, 0] > 0 else "start"
        jumps[kind].append(np.linalg.norm(np.diff(data["action"][lo:hi], axis=0), axis=1))
    out = {}
    for kind, parts in jumps.items():
        if parts:
            j = np.concatenate(parts)
            out[kind] = {"steps": int(len(j) + len(parts)), "mean_jump_px": float(j.mean()), "share_over_30px": float((j > 30).mean())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="working directory (must not exist)")
    parser.add_argument("--head", default="imf_attnres")
    parser.add_argument("--start", choices=("expert", "human"), default="expert",
                        help="Phase I data: --start-episodes scripted-expert demos, or PushT's human demos (206 episodes)")
    parser.add_argument("--start-episodes", type=int, default=20, help="expert demonstrations of Phase I (--start expert)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=10, help="DAgger rollouts per round")
    parser.add_argument("--steps-per-round", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2, help="processes for demos and rollouts (eval.n_envs)")
    parser.add_argument("--phase1", type=Path, metavar="STAGE",
                        help="reuse a finished Phase I (an earlier run's dagger/stages/round_000, same overrides) instead of training one")
    parser.add_argument("--no-bc", dest="bc", action="store_false", help="skip the behaviour-cloning arm")
    parser.add_argument("--no-control", dest="control", action="store_false",
                        help="skip the arm that keeps training on the Phase I data alone")
    parser.add_argument("--tiny", action="store_true", help="a few steps of a tiny head: checks the benchmark runs, measures nothing")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE for both arms (default: configs/pusht_keypoints_cpu.yaml with 12,000 Phase I steps)")
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"--out {args.out} exists; choose a new directory")
    started = time.perf_counter()
    plugins = load_plugins(entry_points=list(metadata.entry_points(group="polx")))
    overrides = (TINY if args.tiny else ["train.max_steps=12000"]) + ["env.obs_type=keypoints", "train.progress=false", "eval.n_train=0", f"eval.n_envs={args.workers}"]
    overrides += [*args.overrides, f"dagger.steps_per_round={args.steps_per_round}"]
    config_files = [] if args.tiny else [REPO / "configs" / "pusht_keypoints_cpu.yaml"]
    env_overrides = [o for o in overrides if o.startswith("env.")]
    from polx.runs import build_env_adapter

    adapter = build_env_adapter(plugins, "pusht", env_overrides)
    if args.start == "human":  # the env's default data (cached on first use); BC's demos then start at seed 0
        start, pool_seed = Path(adapter.default_dataset(progress=False)), 0
        print(f"bench_dagger: Phase I on the human demonstrations ({start})", file=sys.stderr, flush=True)
    else:
        start, pool_seed = args.out / "start.zarr", args.start_episodes
        print(f"bench_dagger: {args.start_episodes} expert demonstrations -> {start}", file=sys.stderr, flush=True)
        adapter.generate_demos(start, args.start_episodes, seed=0, workers=args.workers, keep_all=args.tiny, progress=False)

    # DAgger
    dagger_overrides = list(overrides)
    if config_files:
        dagger_overrides = [f"{k}={v}" for k, v in _flat(config_files[0])] + dagger_overrides

    def arm(name: str):
        """A ``polx dagger`` plan for one arm, in ``--out/name``, with every arm's settings."""
        return prepare_dagger(plugins, head=args.head, env="pusht", dataset=start, rounds=args.rounds, episodes=args.episodes,
                              run_dir=args.out / name, overrides=tuple(dagger_overrides))  # fmt: skip

    plan = arm("dagger")
    if args.phase1:
        if not (args.phase1 / "summary.json").is_file():
            sys.exit(f"--phase1 {args.phase1}: not a finished Phase I stage (no summary.json)")
        shutil.copytree(args.phase1, stage_dir(plan, 0))
    run_dagger(plan)
    table = json.loads((plan.run_dir / "summary.json").read_text())["table"]
    jumps = label_jumps(plan.run_dir / "data" / f"round_{args.rounds:03d}.zarr")
    for kind, j in jumps.items():
        print(f"label jumps, {kind} episodes: mean {j['mean_jump_px']:.1f} px, {j['share_over_30px']:.1%} of steps over 30 px ({j['steps']} steps)")

    bc_started = time.perf_counter()
    bc_rows: list[dict] = []
    if args.bc:
        # BC: the same Phase I, then expert demonstrations matching DAgger's labels round by round
        bc_plan = arm("bc")
        shutil.copytree(stage_dir(plan, 0), stage_dir(bc_plan, 0))
        needed = table[-1]["dataset_steps"] - table[0]["dataset_steps"]
        pool_path = args.out / "bc_pool.zarr"
        per_episode = max(1, int(np.mean(ReplayBuffer.open(start).episode_lengths)))
        adapter.generate_demos(pool_path, needed // per_episode + 5, seed=pool_seed, workers=args.workers, keep_all=args.tiny, progress=False)
        pool, start_rb = ReplayBuffer.open(pool_path), ReplayBuffer.open(start)
        while pool.n_steps < needed:  # the expert's episodes ran shorter than the first guess
            more = args.out / f"bc_pool_{pool.n_episodes}.zarr"
            adapter.generate_demos(more, pool.n_episodes, seed=pool_seed + pool.n_episodes, workers=args.workers, keep_all=args.tiny, progress=False)
            merged = args.out / f"bc_pool_merged_{pool.n_episodes}.zarr"
            write_prefix(merged, [(pool, pool.n_episodes), (ReplayBuffer.open(more), 10**9)])
            pool = ReplayBuffer.open(merged)
        cumulative = np.cumsum(pool.episode_lengths)
        bc_rows = [{"round": 0, "labels": table[0]["dataset_steps"], "test_mean_score": table[0]["test_mean_score"]}]
        for row in table[1:]:
            r = row["round"]
            n = int(np.searchsorted(cumulative, row["dataset_steps"] - table[0]["dataset_steps"]) + 1)
            store = args.out / "bc" / "data" / f"round_{r:03d}.zarr"
            write_prefix(store, [(start_rb, start_rb.n_episodes), (pool, n)])
            stage = train_stage(bc_plan, r, store)
            summary = json.loads((stage / "summary.json").read_text())
            bc_rows.append({"round": r, "labels": ReplayBuffer.open(store).n_steps, "test_mean_score": summary["metrics"].get("test_mean_score")})

    arm_seconds = {"dagger+phase1": round(bc_started - started, 1)}
    if args.bc:
        arm_seconds["bc"] = round(time.perf_counter() - bc_started, 1)

    # Control: the same Phase I, then the same training steps on the Phase I data alone
    control_rows = []
    if args.control:
        control_started = time.perf_counter()
        control_plan = arm("control")
        shutil.copytree(stage_dir(plan, 0), stage_dir(control_plan, 0))
        control_rows = [{"round": 0, "labels": table[0]["dataset_steps"], "test_mean_score": table[0]["test_mean_score"]}]
        for row in table[1:]:
            stage = train_stage(control_plan, row["round"], start)
            summary = json.loads((stage / "summary.json").read_text())
            control_rows.append({"round": row["round"], "labels": table[0]["dataset_steps"], "test_mean_score": summary["metrics"].get("test_mean_score")})
        arm_seconds["control"] = round(time.perf_counter() - control_started, 1)

    columns = [("bc", bc_rows), ("control", control_rows)]
    print("round  train_steps  dagger_labels  dagger_score" + "".join(f"  {name}_labels  {name}_score" for name, rows in columns if rows))
    for i, d in enumerate(table):
        line = f"{d['round']:>5}  {d['train_steps']:>11}  {d['dataset_steps']:>13}  {d['test_mean_score']:>12.3f}"
        for name, rows in columns:
            if rows:
                line += f"  {rows[i]['labels']:>{len(name) + 7}}  {rows[i]['test_mean_score']:>{len(name) + 6}.3f}"
        print(line)
    result = {
        "bench": "dagger_vs_bc_pusht_keypoints",
        "tiny": args.tiny,
        "rounds": args.rounds,
        "episodes_per_round": args.episodes,
        "start": args.start,
        "start_episodes": args.start_episodes if args.start == "expert" else None,
        "steps_per_round": args.steps_per_round,
        "dagger": [{k: d[k] for k in ("round", "train_steps", "dataset_steps", "test_mean_score", "test_success_rate", "disagreement_rate")} for d in table],
        "bc": bc_rows or None,
        "control": control_rows or None,
        "label_jumps": jumps,
        "final_gap": table[-1]["test_mean_score"] - bc_rows[-1]["test_mean_score"] if bc_rows else None,
        "final_gap_to_control": table[-1]["test_mean_score"] - control_rows[-1]["test_mean_score"] if control_rows else None,
        "arm_seconds": arm_seconds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


def _flat(path: Path) -> list[tuple[str, object]]:
    """A YAML config as dotted KEY=VALUE pairs (``polx dagger`` takes overrides, not --config)."""
    import yaml

    def walk(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", json.dumps(value) if not isinstance(value, str) else value

    return list(walk(yaml.safe_load(path.read_text())))


if __name__ == "__main__":
    main()
