"""DAgger against behaviour cloning on PushT keypoints, at equal expert labels and equal training steps.

Both arms start from the same Phase I (one training run on ``--start-episodes`` scripted-expert
demonstrations). Then, round after round:

- DAgger (``polx dagger``) rolls its policy out on ``--episodes`` fresh seeds and adds every visited
  step, labelled by the expert, to its data;
- BC adds scripted-expert demonstrations from other fresh seeds until it holds as many labelled
  steps as DAgger does after that round (the last demonstration cut to match);
- the control adds nothing: it trains on the Phase I data alone (``--no-control`` skips it), so a
  change in score that the control shows too comes from the extra training, not from the labels;

and each continues training for ``--steps-per-round`` steps from its previous round's
checkpoint on all its data, scored on the 50 test seeds (eval.n_test). Also reported: how much
the labels jump from one step to the next (mean |a_t - a_{t-1}| and the share over 30 px), for
the Phase I data and for DAgger's relabelled episodes, since a teacher whose labels jump is hard
to imitate. Readable lines, then one JSON line. The full measurement is long (see ``--help``); a tiny run checks it end to end::

    python benchmarks/bench_dagger.py --tiny --out runs/bench_dagger

``--env roboimi`` runs the same arms on RoboIMI from cameras (configs/roboimi_cpu.yaml at half its
widths, one torch thread per process with ``train.threads=1``), where the scripted expert is both
the demonstrator and the teacher, so its labels agree with its data; each row then also carries the
success rate and the share of the test episodes reaching each stage (reach, grasp, lift, hand-over,
hold). One process per training seed (``train.seed=N``)::

    python benchmarks/bench_dagger.py --env roboimi --out runs/ri0 --rounds 3 --episodes 10 --start-episodes 20 \
        --steps-per-round 1000 train.seed=0 train.threads=1

With ``--teacher CKPT`` (a trained polx checkpoint, LucidSim's shape) the arms are, per training
seed (``--train-seeds``), at equal labels and equal steps:

- Phase I: the student trains on ``--phase1-unrolls`` unrolls from the teacher and from each of its
  intermediate checkpoints (``--phase1-checkpoints``, default its run's top-k), every step labelled
  by the teacher, or (``--phase1-data human``) on PushT's human demonstrations; all arms start from it;
- DAgger: ``polx dagger --teacher CKPT``: the student's own rollouts, labelled by the teacher;
- BC: teacher unrolls on fresh seeds (the teacher drives and labels), as many labels as DAgger
  holds after each round (the last unroll cut to match);
- control: the same steps on the Phase I data alone;

scored on the 50 test seeds, with the teacher's own score on them. ``--obs image`` makes the
student see images (configs/pusht_image_cpu.yaml's encoder) while the teacher keeps its own
observations. One process per training seed uses one core; ``--report DIR...`` merges such runs
into the tables, targets and ``--plot`` PNG::

    python benchmarks/bench_dagger.py --teacher runs/keypoints/checkpoints/latest.ckpt --out runs/bd0 --train-seeds 0
    python benchmarks/bench_dagger.py --teacher runs/keypoints/checkpoints/latest.ckpt --out runs/bd1 --train-seeds 1
    python benchmarks/bench_dagger.py --report runs/bd0 runs/bd1 --plot benchmarks/dagger_teacher.png
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

from polx.dagger import collect_unrolls, prepare_dagger, run_dagger, stage_dir, train_stage, write_episodes  # BC trains its rounds as DAgger does
from polx.data.replay_buffer import ReplayBuffer
from polx.plugins import load_plugins

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "head.n_emb=32", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1", "train.max_steps=20", "train.batch_size=8",
    "train.val_every=0", "train.checkpoint_every=0", "eval.rollout_every=0", "eval.n_test=2", "eval.max_steps=30",
    "eval.n_vis=1", "env.demo_max_steps=60",
]  # fmt: skip
# RoboIMI (--env roboimi): the camera recipe's encoder and head at half width (a CPU budget), and tiny sizes for --tiny
ROBOIMI = ["encoder.channels=[16, 16, 32, 32]", "encoder.feature_dim=32", "head.n_emb=64", "head.n_layer=2", "head.n_head=2", "train.warmup_steps=300"]
ROBOIMI_TINY = [
    "env.image_size=32", "encoder.crop_shape=[28, 28]", "encoder.channels=[8, 8]", "encoder.feature_dim=16", "head.n_emb=32", "head.n_layer=1",
    "head.n_head=2", "head.n_kv_head=1", "train.max_steps=20", "train.batch_size=8", "train.val_every=0", "train.checkpoint_every=0",
    "eval.rollout_every=0", "eval.n_test=2", "eval.max_steps=30", "eval.n_vis=1", "dagger.max_steps=30",
]  # fmt: skip


def write_prefix(out: Path, sources: list[tuple[ReplayBuffer, int]], total_steps: int | None = None) -> None:
    """A store holding the first ``n`` episodes of each source, in order, with the arrays they all have
    (the human demonstrations' low-dim store has no ``img``; generated demos always do); with
    ``total_steps``, cut where the store reaches that many steps (the last episode truncated), so
    two arms hold exactly equal labels."""
    keys = sorted(set.intersection(*(set(source.keys()) for source, _ in sources)))
    written = 0
    with ReplayBuffer.writer(out) as rb:
        for source, n in sources:
            data, ends = source.load(keys), source.episode_ends
            starts = np.concatenate([[0], ends[:-1]])
            for lo, hi in list(zip(starts, ends))[:n]:
                if total_steps is not None:
                    hi = min(hi, lo + total_steps - written)
                    if hi <= lo:
                        return
                rb.add_episode({key: value[lo:hi] for key, value in data.items()})
                written += hi - lo


def rollout_metrics(stage: Path) -> dict[str, float]:
    """A trained stage's test rollouts from its ``summary.json``: mean score, success rate and, for an env
    with stages (RoboIMI), the share of episodes reaching each (``test_reached_<stage>``)."""
    metrics = json.loads((Path(stage) / "summary.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if k in ("test_mean_score", "test_success_rate") or k.startswith("test_reached_")}


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
    parser.add_argument("--out", type=Path, help="working directory (must not exist)")
    parser.add_argument("--teacher", type=Path, help="a trained polx checkpoint as the teacher (see above); default: the env's scripted expert")
    parser.add_argument("--obs", choices=("keypoints", "image"), default="keypoints", help="--teacher: what the student observes")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1], help="--teacher: train.seed of each arm's runs")
    parser.add_argument("--phase1-data", choices=("unrolls", "human"), default="unrolls",
                        help="--teacher: Phase I on the teacher's labelled unrolls (LucidSim), or on PushT's human demonstrations")
    parser.add_argument("--phase1-unrolls", type=int, default=10, help="--teacher: unrolls from each Phase I source")
    parser.add_argument("--phase1-checkpoints", default="all", help="--teacher: dagger.phase1_checkpoints (a YAML list, or all)")
    parser.add_argument("--phase1-steps", type=int, help="--teacher: Phase I training steps (default 4000 keypoints, 3000 image)")
    parser.add_argument("--report", type=Path, nargs="+", metavar="DIR", help="merge finished --teacher runs' result.json into tables")
    parser.add_argument("--plot", type=Path, help="--report: write the score-by-round PNG here")
    parser.add_argument("--baseline", type=Path, nargs="*", default=[], metavar="RUN",
                        help="--report: polx train runs of the same student on the human demonstrations, compared at equal steps")
    parser.add_argument("--head", default="imf_attnres")
    parser.add_argument("--env", choices=("pusht", "roboimi"), default="pusht",
                        help="scripted-expert teacher: pusht (keypoints), or roboimi (cameras, configs/roboimi_cpu.yaml at half width; "
                             "the expert is both the demonstrator and the teacher); the rows then carry success and per-stage rates")
    parser.add_argument("--start", choices=("expert", "human"), default="expert",
                        help="Phase I data: --start-episodes scripted-expert demos, or PushT's human demos (206 episodes)")
    parser.add_argument("--start-episodes", type=int, default=20, help="expert demonstrations of Phase I (--start expert)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=10, help="DAgger rollouts per round")
    parser.add_argument("--steps-per-round", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2, help="processes for demos and rollouts (eval.n_envs)")
    parser.add_argument("--phase1", type=Path, metavar="STAGE",
                        help="reuse a finished Phase I (an earlier run's dagger/stages/round_000, same overrides) instead of training one; "
                             "with --teacher, an earlier --teacher run's --out, whose seed<N>/dagger Phase I each seed copies")
    parser.add_argument("--no-bc", dest="bc", action="store_false", help="skip the behaviour-cloning arm")
    parser.add_argument("--no-control", dest="control", action="store_false",
                        help="skip the arm that keeps training on the Phase I data alone")
    parser.add_argument("--tiny", action="store_true", help="a few steps of a tiny head: checks the benchmark runs, measures nothing")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE for both arms (default: configs/pusht_keypoints_cpu.yaml with 12,000 Phase I steps)")
    args = parser.parse_args()
    if args.report:
        return report(args.report, args.plot, args.baseline)
    if args.out is None:
        sys.exit("--out is required (a new working directory)")
    if args.out.exists():
        sys.exit(f"--out {args.out} exists; choose a new directory")
    if args.teacher is not None:
        if args.env != "pusht":
            parser.error("--teacher: the policy-teacher arms are PushT's (keypoints teacher, keypoints or image student); drop --env")
        return teacher_bench(args)
    if args.env == "roboimi" and args.start == "human":
        parser.error("--start human: RoboIMI has no human demonstrations; its Phase I is --start expert (--start-episodes)")
    started = time.perf_counter()
    plugins = load_plugins(entry_points=list(metadata.entry_points(group="polx")))
    if args.env == "roboimi":
        overrides = ROBOIMI + (ROBOIMI_TINY if args.tiny else ["train.max_steps=3000"])
    else:
        overrides = (TINY if args.tiny else ["train.max_steps=12000"]) + ["env.obs_type=keypoints"]
    overrides += ["train.progress=false", "eval.n_train=0", f"eval.n_envs={args.workers}", *args.overrides, f"dagger.steps_per_round={args.steps_per_round}"]
    config_files = [] if args.tiny and args.env == "pusht" else [REPO / "configs" / {"pusht": "pusht_keypoints_cpu.yaml", "roboimi": "roboimi_cpu.yaml"}[args.env]]
    dagger_overrides = list(overrides)
    if config_files:
        dagger_overrides = [f"{k}={v}" for k, v in _flat(config_files[0])] + dagger_overrides
    env_overrides = [o for o in dagger_overrides if o.startswith("env.")]  # the demonstrations as the arms will read them
    from polx.runs import build_env_adapter

    adapter = build_env_adapter(plugins, args.env, env_overrides)
    if args.start == "human":  # the env's default data (cached on first use); BC's demos then start at seed 0
        start, pool_seed = Path(adapter.default_dataset(progress=False)), 0
        print(f"bench_dagger: Phase I on the human demonstrations ({start})", file=sys.stderr, flush=True)
    else:
        start, pool_seed = args.out / "start.zarr", args.start_episodes
        print(f"bench_dagger: {args.start_episodes} expert demonstrations -> {start}", file=sys.stderr, flush=True)
        adapter.generate_demos(start, args.start_episodes, seed=0, workers=args.workers, keep_all=args.tiny, progress=False)

    # DAgger
    def arm(name: str):
        """A ``polx dagger`` plan for one arm, in ``--out/name``, with every arm's settings."""
        return prepare_dagger(plugins, head=args.head, env=args.env, dataset=start, rounds=args.rounds, episodes=args.episodes,
                              run_dir=args.out / name, overrides=tuple(dagger_overrides))  # fmt: skip

    plan = arm("dagger")
    if args.phase1:
        if not (args.phase1 / "summary.json").is_file():
            sys.exit(f"--phase1 {args.phase1}: not a finished Phase I stage (no summary.json)")
        shutil.copytree(args.phase1, stage_dir(plan, 0))
    run_dagger(plan)
    table = json.loads((plan.run_dir / "summary.json").read_text())["table"]
    phase1_metrics = rollout_metrics(stage_dir(plan, 0))  # round 0 of every arm
    jumps = label_jumps(plan.run_dir / "data" / f"round_{args.rounds:03d}.zarr") if args.env == "pusht" else {}  # in PushT's pixels
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
        bc_rows = [{"round": 0, "labels": table[0]["dataset_steps"], **phase1_metrics}]
        for row in table[1:]:
            r = row["round"]
            n = int(np.searchsorted(cumulative, row["dataset_steps"] - table[0]["dataset_steps"]) + 1)
            store = args.out / "bc" / "data" / f"round_{r:03d}.zarr"
            write_prefix(store, [(start_rb, start_rb.n_episodes), (pool, n)], total_steps=row["dataset_steps"])  # DAgger's labels, exactly
            bc_rows.append({"round": r, "labels": ReplayBuffer.open(store).n_steps, **rollout_metrics(train_stage(bc_plan, r, store))})

    arm_seconds = {"dagger+phase1": round(bc_started - started, 1)}
    if args.bc:
        arm_seconds["bc"] = round(time.perf_counter() - bc_started, 1)

    # Control: the same Phase I, then the same training steps on the Phase I data alone
    control_rows = []
    if args.control:
        control_started = time.perf_counter()
        control_plan = arm("control")
        shutil.copytree(stage_dir(plan, 0), stage_dir(control_plan, 0))
        control_rows = [{"round": 0, "labels": table[0]["dataset_steps"], **phase1_metrics}]
        for row in table[1:]:
            control_rows.append({"round": row["round"], "labels": table[0]["dataset_steps"], **rollout_metrics(train_stage(control_plan, row["round"], start))})
        arm_seconds["control"] = round(time.perf_counter() - control_started, 1)

    columns = [("bc", bc_rows), ("control", control_rows)]
    print("round  train_steps  dagger_labels  dagger_score" + "".join(f"  {name}_labels  {name}_score" for name, rows in columns if rows))
    for i, d in enumerate(table):
        line = f"{d['round']:>5}  {d['train_steps']:>11}  {d['dataset_steps']:>13}  {d['test_mean_score']:>12.3f}"
        for name, rows in columns:
            if rows:
                line += f"  {rows[i]['labels']:>{len(name) + 7}}  {rows[i]['test_mean_score']:>{len(name) + 6}.3f}"
        print(line)
    dagger_rows = [{**{k: d[k] for k in ("round", "train_steps", "dataset_steps", "disagreement_rate")}, **(rollout_metrics(stage_dir(plan, d["round"])) if d["round"] else phase1_metrics)}
                   for d in table]  # fmt: skip
    for name, rows in (("dagger", dagger_rows), *columns):
        if rows and "test_success_rate" in rows[-1]:  # e.g. RoboIMI: success, and the share of episodes reaching each stage
            stages = ", ".join(f"{k.removeprefix('test_reached_')} {v:.0%}" for k, v in rows[-1].items() if k.startswith("test_reached_"))
            print(f"{name}, round {rows[-1]['round']}: success {rows[-1]['test_success_rate']:.0%}" + (f"; reached {stages}" if stages else ""))
    result = {
        "bench": f"dagger_vs_bc_{args.env}" + ("_keypoints" if args.env == "pusht" else ""),
        "tiny": args.tiny,
        "rounds": args.rounds,
        "episodes_per_round": args.episodes,
        "start": args.start,
        "start_episodes": args.start_episodes if args.start == "expert" else None,
        "steps_per_round": args.steps_per_round,
        "dagger": dagger_rows,
        "bc": bc_rows or None,
        "control": control_rows or None,
        "label_jumps": jumps,
        "final_gap": table[-1]["test_mean_score"] - bc_rows[-1]["test_mean_score"] if bc_rows else None,
        "final_gap_to_control": table[-1]["test_mean_score"] - control_rows[-1]["test_mean_score"] if control_rows else None,
        "arm_seconds": arm_seconds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# a trained policy as the teacher

STUDENT = {  # a smaller student than the keypoints recipe's (n_emb 96, 3 layers), at a small budget
    "keypoints": ["env.obs_type=keypoints", "head.n_emb=64", "head.n_layer=2", "head.n_head=2", "head.n_kv_head=1", "train.batch_size=64",
                  "train.lr=0.002", "train.warmup_steps=300"],
    # configs/pusht_image_cpu.yaml (64 px, the convnet encoder on 56 px crops, one step) at half its widths and without its minute budget
    "image": ["encoder.channels=[16, 16, 32, 32]", "encoder.feature_dim=32", "head.n_emb=64", "head.n_layer=2", "head.n_head=2",
              "train.batch_size=64", "train.warmup_steps=300"],
}  # fmt: skip
COMMON = ["train.progress=false", "train.val_every=0", "train.checkpoint_every=1000", "eval.rollout_every=0", "eval.n_train=0", "eval.n_vis=2",
          "eval.n_test=50", "train.threads=1", "eval.n_envs=1"]  # fmt: skip
TEACHER_TINY = ["head.n_emb=32", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1", "train.batch_size=8", "eval.n_test=2", "eval.max_steps=30",
                "eval.n_vis=1", "train.checkpoint_every=0"]  # fmt: skip


def teacher_bench(args) -> None:
    """The three arms for each of ``--train-seeds`` (see the module docs); ``result.json`` and one JSON line."""
    from polx.dagger import load_checkpoint_spec
    from polx.eval.evaluate import evaluate_checkpoint

    import torch

    torch.set_num_threads(1)  # one core per process (COMMON's train.threads=1): two such runs side by side use both
    started = time.perf_counter()
    plugins = load_plugins(entry_points=list(metadata.entry_points(group="polx")))
    if args.obs == "image":
        recipe = [f"{k}={v}" for k, v in _flat(REPO / "configs" / "pusht_image_cpu.yaml")]
        student = [o for o in recipe if not o.startswith(("train.max_minutes", "train.max_steps"))] + STUDENT["image"]
    else:
        student = list(STUDENT["keypoints"])
    phase1_steps = args.phase1_steps or (3000 if args.obs == "image" else 4000)
    if args.phase1_data == "unrolls":
        phase1 = ["dagger.phase1=unrolls", f"dagger.phase1_unrolls={args.phase1_unrolls}", f"dagger.phase1_checkpoints={_yaml_list(args.phase1_checkpoints)}"]
    else:  # the env's human demonstrations
        phase1 = ["dagger.phase1=dataset"]
    overrides = [*student, *COMMON, f"train.max_steps={phase1_steps}", f"dagger.steps_per_round={args.steps_per_round}", *phase1,
                 f"eval.n_envs={args.workers}"]  # fmt: skip
    if args.tiny:
        overrides += TEACHER_TINY + ["train.max_steps=4", "dagger.steps_per_round=4", "dagger.max_steps=20", "dagger.phase1_unrolls=1"]
    overrides += args.overrides
    args.out.mkdir(parents=True)
    say = lambda text: print(f"bench_dagger: {text}", file=sys.stderr, flush=True)  # noqa: E731

    # the teacher's own score on the test seeds, evaluated as the students are
    test_overrides = [o for o in overrides if o.startswith(("eval.n_test", "eval.max_steps", "eval.n_envs"))]
    say(f"scoring the teacher {args.teacher} on the test seeds")
    teacher_report = evaluate_checkpoint(plugins, _ckpt(args.teacher), out=args.out / "teacher_eval", overrides=[*test_overrides, "eval.n_vis=0", "eval.n_train=0"])
    teacher_score = teacher_report["metrics"]["test_mean_score"]
    say(f"teacher: test_mean_score {teacher_score:.3f}")

    seeds_out = {}
    for seed in args.train_seeds:
        base = args.out / f"seed{seed}"
        arm = lambda name: prepare_dagger(plugins, head=args.head, env="pusht", rounds=args.rounds, episodes=args.episodes, teacher=str(args.teacher),  # noqa: E731
                                          run_dir=base / name, overrides=tuple([*overrides, f"train.seed={seed}"]))  # fmt: skip
        t0 = time.perf_counter()
        plan = arm("dagger")
        if args.phase1:  # an earlier run's Phase I stage of the same seed and overrides (e.g. to compare dagger.label over the rounds)
            if not (args.phase1 / f"seed{seed}" / "dagger" / "stages" / "round_000" / "summary.json").is_file():
                sys.exit(f"--phase1 {args.phase1}: no finished seed{seed}/dagger/stages/round_000 (a --teacher run's --out)")
            shutil.copytree(args.phase1 / f"seed{seed}" / "dagger" / "stages" / "round_000", stage_dir(plan, 0))
        run_dagger(plan)
        table = json.loads((plan.run_dir / "summary.json").read_text())["table"]
        seconds = {"dagger+phase1": round(time.perf_counter() - t0, 1)}
        phase1 = plan.run_dir / "data" / "phase1.zarr"
        if args.phase1_data == "human":  # Phase I's data as the rounds' stores hold them (with chunks under dagger.label=chunk)
            final = ReplayBuffer.open(plan.run_dir / "data" / f"round_{args.rounds:03d}.zarr")
            phase1 = base / "phase1.zarr"
            write_prefix(phase1, [(final, table[0]["dataset_episodes"])])

        # BC: the teacher's own unrolls on fresh seeds, as many labels as DAgger's rounds added
        t0 = time.perf_counter()
        bc_rows = None
        if args.bc:
            bc_rows = _bc_arm(args, plugins, plan, table, arm("bc"), base, phase1)
            seconds["bc"] = round(time.perf_counter() - t0, 1)

        # control: the same steps on the Phase I data alone
        t0 = time.perf_counter()
        control_rows = [{"round": 0, "labels": table[0]["dataset_steps"], "test_mean_score": table[0]["test_mean_score"]}]
        if args.control:
            control_plan = arm("control")
            shutil.copytree(stage_dir(plan, 0), stage_dir(control_plan, 0))
        for row in table[1:] if args.control else []:
            stage = train_stage(control_plan, row["round"], phase1)
            summary = json.loads((stage / "summary.json").read_text())
            control_rows.append({"round": row["round"], "labels": table[0]["dataset_steps"], "train_steps": summary["global_step"],
                                 "test_mean_score": summary["metrics"].get("test_mean_score")})  # fmt: skip
        if args.control:
            seconds["control"] = round(time.perf_counter() - t0, 1)
        else:
            control_rows = None
        keep = ("round", "train_steps", "dataset_steps", "test_mean_score", "test_success_rate", "disagreement_rate", "label_ms_per_step",
                "labels_outside_normalizer", "rollout_mean_score")  # fmt: skip
        seeds_out[str(seed)] = {"dagger": [{k: d.get(k) for k in keep} for d in table], "bc": bc_rows, "control": control_rows, "seconds": seconds,
                                "phase1": json.loads(phase1.with_suffix(".json").read_text()) if phase1.with_suffix(".json").is_file() else None}  # fmt: skip
    result = {
        "bench": f"dagger_policy_teacher_pusht_{args.obs}", "tiny": args.tiny, "teacher": str(args.teacher), "teacher_score": teacher_score,
        "obs": args.obs, "rounds": args.rounds, "episodes_per_round": args.episodes, "steps_per_round": args.steps_per_round,
        "phase1_steps": phase1_steps, "phase1_data": args.phase1_data, "phase1_unrolls": args.phase1_unrolls, "overrides": overrides, "seeds": seeds_out,
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    report([args.out], None, [])


def _bc_arm(args, plugins, plan, table: list[dict], bc_plan, base: Path, phase1: Path) -> list[dict]:
    """The teacher's own unrolls on fresh seeds after Phase I, cut to DAgger's label count after each round."""
    shutil.copytree(stage_dir(plan, 0), stage_dir(bc_plan, 0))
    needed = table[-1]["dataset_steps"] - table[0]["dataset_steps"]
    pool_store, pool = base / "bc_pool.zarr", []
    next_seed = 600_000
    while sum(e.steps for e in pool) < needed:
        batch = max(args.workers, (needed - sum(e.steps for e in pool)) // 200 + 1)
        pool += collect_unrolls(plugins, plan.train_config, plan.adapter, [plan.teacher], plan.teacher, [list(range(next_seed, next_seed + batch))],
                                max_steps=plan.train_config.eval.max_steps, threshold=plan.dagger.disagreement, progress=False,
                                trim=plan.dagger.unroll_trim)  # fmt: skip
        next_seed += batch
    write_episodes(pool_store, pool, plan.layout, teacher_keys=False)
    cumulative = np.cumsum([e.steps for e in pool])
    bc_rows = [{"round": 0, "labels": table[0]["dataset_steps"], "test_mean_score": table[0]["test_mean_score"]}]
    phase1_rb, pool_rb = ReplayBuffer.open(phase1), ReplayBuffer.open(pool_store)
    for row in table[1:]:
        r = row["round"]
        n = int(np.searchsorted(cumulative, row["dataset_steps"] - table[0]["dataset_steps"]) + 1)
        store = bc_plan.run_dir / "data" / f"round_{r:03d}.zarr"
        write_prefix(store, [(phase1_rb, phase1_rb.n_episodes), (pool_rb, n)], total_steps=row["dataset_steps"])  # DAgger's labels, exactly
        stage = train_stage(bc_plan, r, store)
        summary = json.loads((stage / "summary.json").read_text())
        bc_rows.append({"round": r, "labels": ReplayBuffer.open(store).n_steps, "train_steps": summary["global_step"],
                        "test_mean_score": summary["metrics"].get("test_mean_score")})  # fmt: skip
    return bc_rows


def baseline_scores(runs: list[Path]) -> dict[int, list[float]]:
    """test_mean_score by step of ``polx train`` runs (their ``logs.json.txt``), for equal-step comparisons."""
    scores: dict[int, list[float]] = {}
    for run in runs:
        for line in (Path(run) / "logs.json.txt").read_text().splitlines():
            record = json.loads(line)
            if "test_mean_score" in record:
                scores.setdefault(int(record["global_step"]), []).append(float(record["test_mean_score"]))
    return scores


def report(dirs: list[Path], plot: Path | None, baselines: list[Path] = ()) -> None:
    """Tables (mean and spread over training seeds), the issue's targets, a PNG; then one JSON line."""
    results = [json.loads((Path(d) / "result.json").read_text()) for d in dirs]
    first = results[0]
    seeds = {seed: value for r in results for seed, value in r["seeds"].items()}
    teacher = first["teacher_score"]
    arms = tuple(a for a in ("dagger", "bc", "control") if all(s.get(a) for s in seeds.values()))
    rounds = [row["round"] for row in next(iter(seeds.values()))["dagger"]]
    print(f"PushT, {first['obs']} student, teacher {first['teacher']} (test_mean_score {teacher:.3f}); training seeds {', '.join(sorted(seeds))}")
    print("round  steps  " + "  ".join(f"{a + ' labels':>13}  {a + ' score (mean, min-max)':>28}" for a in arms))
    table = []
    for i, r in enumerate(rounds):
        line = {"round": r, "train_steps": next(iter(seeds.values()))["dagger"][i]["train_steps"]}
        text = f"{r:>5}  {line['train_steps']:>5}  "
        for a in arms:
            scores = [s[a][i]["test_mean_score"] for s in seeds.values()]
            labels = [s[a][i]["labels"] if a != "dagger" else s[a][i]["dataset_steps"] for s in seeds.values()]
            line[a] = {"mean": float(np.mean(scores)), "min": float(min(scores)), "max": float(max(scores)), "labels": int(np.mean(labels))}
            text += f"{line[a]['labels']:>13}  {line[a]['mean']:>10.3f} ({line[a]['min']:.3f}-{line[a]['max']:.3f})       "
        print(text)
        table.append(line)
    base = baseline_scores(list(baselines)) if baselines else {}
    for line in table:
        if line["train_steps"] in base:
            line["human_demos"] = {"mean": float(np.mean(base[line["train_steps"]])), "runs": len(base[line["train_steps"]])}
            print(f"  at step {line['train_steps']}: the same student on the human demonstrations alone scores {line['human_demos']['mean']:.3f}")
    final = table[-1]
    label_ms = [row["label_ms_per_step"] for s in seeds.values() for row in s["dagger"] if row.get("label_ms_per_step")]
    outside = [row["labels_outside_normalizer"] for s in seeds.values() for row in s["dagger"][1:] if row.get("labels_outside_normalizer") is not None]
    targets = {
        "dagger_minus_bc": final["dagger"]["mean"] - final["bc"]["mean"] if "bc" in final else None,
        "dagger_over_teacher": final["dagger"]["mean"] / teacher if teacher else None,
        "dagger_minus_control": final["dagger"]["mean"] - final["control"]["mean"] if "control" in final else None,
        "dagger_minus_human_demos": final["dagger"]["mean"] - final["human_demos"]["mean"] if "human_demos" in final else None,
    }
    if targets["dagger_minus_human_demos"] is not None:
        print(f"DAgger - the student on the human demonstrations at equal steps: {targets['dagger_minus_human_demos']:+.3f} (target > 0)")
    print(f"after {rounds[-1]} rounds: "
          + (f"DAgger - BC {targets['dagger_minus_bc']:+.3f} (target >= +0.05); " if targets["dagger_minus_bc"] is not None else "")
          + f"DAgger / teacher {targets['dagger_over_teacher']:.2f} (target >= 0.90 for a keypoints student)"
          + (f"; DAgger - control {targets['dagger_minus_control']:+.3f}" if targets["dagger_minus_control"] is not None else ""))
    print(f"labelling: {np.mean(label_ms):.2f} ms per step (mean over Phase I and rounds); new labels outside the student's normaliser: "
          f"{', '.join(f'{o:.1%}' for o in outside)}")
    if plot is not None:
        _plot(table, teacher, plot, f"PushT {first['obs']} student, {len(seeds)} training seeds")
        print(f"plot: {plot}")
    print(json.dumps({"bench": first["bench"], "teacher_score": teacher, "training_seeds": sorted(seeds), "table": table, "targets": targets,
                      "label_ms_per_step": float(np.mean(label_ms)), "labels_outside_normalizer": outside,
                      "seconds": {seed: s["seconds"] for seed, s in seeds.items()}}))  # fmt: skip


def _plot(table: list[dict], teacher: float, out: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.subplots()
    x = [row["train_steps"] for row in table]
    for arm, color in (("dagger", "C0"), ("bc", "C1"), ("control", "C2")):
        if arm not in table[0]:
            continue
        mean = [row[arm]["mean"] for row in table]
        ax.plot(x, mean, marker="o", color=color, label=arm)
        ax.fill_between(x, [row[arm]["min"] for row in table], [row[arm]["max"] for row in table], color=color, alpha=0.15)
    human = [(row["train_steps"], row["human_demos"]["mean"]) for row in table if "human_demos" in row]
    if human:
        ax.plot(*zip(*human), marker="s", color="C3", label="human demos only")
    ax.axhline(teacher, color="k", linestyle="--", linewidth=1, label="teacher")
    ax.set_xlabel("training steps (Phase I, then one round per point)")
    ax.set_ylabel("test_mean_score (50 seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(out, dpi=110)


def _ckpt(path: Path) -> Path:
    return path / "checkpoints" / "latest.ckpt" if path.is_dir() else path


def _yaml_list(text: str) -> str:
    return text if text.startswith("[") else f"[{text}]"


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
