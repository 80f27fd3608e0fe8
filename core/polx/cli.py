"""The ``polx`` command line. Nothing here imports torch at module load: ``polx --help`` and
``polx plugins list`` stay fast, and heavy work is imported inside the command that needs it.

Exit codes: 0 success; 2 bad user input (unknown names, bad config, missing paths); 1 a plugin
or runtime failure (``--debug`` shows the traceback).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from polx.version import __version__
from polx.errors import PolxError, UserInputError

_DEBUG_ENV = "POLX_DEBUG"


class PolxGroup(click.Group):
    """Turns polx errors into one clear line and the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except UserInputError as exc:
            _maybe_traceback()
            raise click.UsageError(str(exc)) from None
        except PolxError as exc:
            _maybe_traceback()
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # a plugin or runtime failure: message, not traceback
            _maybe_traceback()
            click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
            if not _debug():
                click.echo("(run with polx --debug ... for the traceback)", err=True)
            ctx.exit(1)


def _debug() -> bool:
    return os.environ.get(_DEBUG_ENV) == "1"


def _maybe_traceback() -> None:
    if _debug():
        traceback.print_exc()


def _plugins(warn_broken: bool = False) -> Any:
    """The installed plugin set; ``warn_broken``: name each broken plugin on stderr first."""
    from polx.plugins import load_plugins

    loaded = load_plugins()
    if warn_broken:
        for line in loaded.broken_warnings():
            click.echo(line, err=True)
    return loaded


def _complete(kind: str):
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        try:
            return [n for n in _plugins().registry.names(kind) if n.startswith(incomplete)]
        except Exception:
            return []

    return complete


@click.group(cls=PolxGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="polx")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """polx: train and evaluate action-chunk generative visuomotor policies.

    \b
    Quick start:
      polx plugins list                              what is installed
      polx train --head imf_attnres --env pusht      train, roll out, checkpoint
      polx eval --checkpoint runs/.../checkpoints/latest.ckpt
      polx plot runs/<date>/<run>                    training curves as a PNG
      polx export runs/<date>/<run> --out DIR        a policy that runs outside polx (polx serve, load_policy)

    Heads, objectives, loggers and environments are plugins (pip install polx-plugin-*).
    """
    if debug:
        os.environ[_DEBUG_ENV] = "1"


# ---------------------------------------------------------------------------------------------
# plugins


@main.group()
def plugins() -> None:
    """Inspect installed plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array only (for scripts).")
def plugins_list(as_json: bool) -> None:
    """List plugins (version, status or error, components, hooks), then each component's help.

    Each plugin's factories are imported and its heads built on the meta device, so a plugin
    whose factory does not import, whose head lacks a method the trainer calls, or that names a
    hook polx does not have is listed as broken (polx check plugins also runs each head with
    its objectives). Environment: POLX_DISABLE_PLUGINS=a,b skips plugins; POLX_STRICT_PLUGINS=1 makes a broken
    plugin an error instead of a row marked broken.
    """
    from polx.contracts import check_loaded
    from polx.plugins import CORE_PLUGIN_NAME, PluginInfo

    loaded = _plugins()
    check_loaded(loaded)  # factories import, heads have what the trainer calls (polx.contracts)
    core = PluginInfo(  # core's built-in components (JSON log, dataset formats, offline env), listed like a plugin's
        name="core",
        version=__version__,
        distribution="polx",
        status="ok",
        components=loaded.registry.by_plugin(CORE_PLUGIN_NAME),
        help=loaded.registry.help_by_plugin(CORE_PLUGIN_NAME),
    )
    rows = [core.as_dict(), *(info.as_dict() for info in loaded.infos)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not loaded.infos:
        click.echo("no plugins installed (pip install polx-plugin-...); core's own components:")
    headers = ["plugin", "version", "status", "components", "hooks"]
    table = []
    for r in rows:
        comps = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in r["components"].items()) or "-"
        status = r["status"] if r["status"] != "broken" else f"broken: {r['error']}"
        hooks = ", ".join(h for h in r["hooks"]) or "-"
        table.append([r["name"], r["version"] or "-", status, comps, hooks])
    widths = [max(len(str(row[i])) for row in [headers] + table) for i in range(len(headers))]
    widths[-1] = 0
    fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    click.echo(fmt(headers))
    click.echo(fmt(["-" * max(w, 5) for w in widths[:-1]] + ["-----"]))
    for row in table:
        click.echo(fmt(row))
    described = [(kind, name, r["name"], text) for r in rows for kind, names in r["help"].items() for name, text in names.items()]
    if described:
        click.echo("\ncomponents:")
        name_width = max(len(f"{kind} {name}") for kind, name, _, _ in described)
        for kind, name, plugin, text in sorted(described):
            click.echo(f"  {f'{kind} {name}'.ljust(name_width)}  {text or '-'}  [{plugin}]")


@main.group("plugin")
def plugin_group() -> None:
    """Write a new plugin to start from."""


@plugin_group.command("new")
@click.argument("kind", type=click.Choice(["head", "objective", "env", "logger", "dataset"]))
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), default=Path("."), show_default=True, help="Directory to write polx-plugin-NAME/ in.")
def plugin_new(kind: str, name: str, out: Path) -> None:
    """Write a complete plugin distribution: pyproject with the entry point, config, component, test.

    \b
    Example:
      polx plugin new head mlp && pip install -e polx-plugin-mlp && polx train --head mlp --env pusht
    """
    from polx.scaffold import write_plugin

    root = write_plugin(kind, name, out)
    click.echo(f"wrote {root}")
    click.echo(f"next: pip install -e {root} && polx plugins list && python -m pytest {root / 'tests'}")


def _backend_option(what: str, local: str = "local processes (eval.n_envs of them, the default)", ray: str = "Ray actors") -> Any:
    return click.option(
        "--backend", type=click.Choice(["local", "ray"]),
        help=f"Where {what} run: {local} or {ray} (sets exec.backend; "
        "pip install 'polx[ray]'; exec.ray_address=auto|HOST:PORT joins a running cluster, default: a Ray started for the command).",
    )  # fmt: skip


def _with_backend(overrides: tuple[str, ...], backend: str | None) -> tuple[str, ...]:
    return (*overrides, f"exec.backend={backend}") if backend else overrides


# ---------------------------------------------------------------------------------------------
# train


@main.command(context_settings={"ignore_unknown_options": False})
@click.option("--head", shell_complete=_complete("head"), help="Network head, e.g. imf_attnres or ddpm_transformer.")
@click.option("--env", shell_complete=_complete("env"), help="Environment, e.g. pusht or roboimi; omit it with --dataset to train without one (no rollouts).")
@click.option("--objective", shell_complete=_complete("objective"), help="Training objective (default: the head's own).")
@click.option("--dataset", type=click.Path(path_type=Path), help="Dataset: zarr, hdf5 episode directory or LeRobot directory (default: the env's cached expert demos).")
@click.option("--dataset-format", "dataset_format", help="Format of --dataset (default: detected from the path); sets data.format.")
@click.option("--config", "config_files", multiple=True, type=click.Path(path_type=Path), help="YAML or TOML config file (repeatable).")
@click.option("--logger", "loggers", multiple=True, shell_complete=_complete("logger"), help="Extra logger (repeatable): swanlab, wandb; 'none' turns all off, json included.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True, help="Root of run directories.")
@click.option("--run-dir", type=click.Path(path_type=Path), help="Exact run directory (default: OUT/<date>/<time>_<head>_<env>).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), help="Continue the run in this directory from its latest checkpoint.")
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@_backend_option("rollouts")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def train(
    head: str | None,
    env: str | None,
    objective: str | None,
    dataset: Path | None,
    dataset_format: str | None,
    config_files: tuple[Path, ...],
    loggers: tuple[str, ...],
    out: Path,
    run_dir: Path | None,
    resume_dir: Path | None,
    print_config: bool,
    backend: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Train a policy, evaluate it by rollouts, log and checkpoint.

    \b
    Config sources, later wins: defaults, env preset, head preset, --config FILE, KEY=VALUE.
    Examples:
      polx train --head imf_attnres --env pusht --config configs/quickstart_cpu.yaml  # minutes on a CPU
      polx train --head imf_attnres --env pusht train.device=cuda                     # full strength
      polx train --head imf_attnres --env pusht train.max_steps=50000 head.n_emb=384
      polx train --head ddpm_transformer --env pusht --dataset data/pusht_cchi_v7_replay.zarr
      polx train --head imf_attnres --env roboimi --dataset roboimi_act/    # ACT episode_N.hdf5 files
      polx train --head imf_attnres --dataset my_lerobot_dataset/          # no env: shapes from the data, losses only
      polx train --resume runs/2026-01-01/12-00-00_imf_attnres_pusht train.max_steps=20000
    Common keys: train.max_steps train.batch_size train.lr train.device (auto|cpu|cuda)
    eval.rollout_every eval.n_test policy.horizon head.n_emb (see --print-config for all).
    """
    from polx.runs import prepare_training

    plan = prepare_training(
        _plugins(warn_broken=True),
        head=head,
        env=env,
        objective=objective,
        dataset=dataset,
        config_files=config_files,
        loggers=loggers,
        out=out if click.get_current_context().get_parameter_source("out") != click.core.ParameterSource.DEFAULT else None,
        run_dir=run_dir,
        resume_dir=resume_dir,
        overrides=(*_with_backend(overrides, backend), *([f"data.format={dataset_format}"] if dataset_format else [])),
        argv=sys.argv,
        dry_call=not print_config,
    )
    if print_config:
        click.echo(plan.config.to_yaml(comments=True), nl=False)
        return
    from polx.train.trainer import run_training

    run_training(plan)


# ---------------------------------------------------------------------------------------------
# dagger


@main.command()
@click.option("--head", shell_complete=_complete("head"), help="Network head, e.g. imf_attnres.")
@click.option("--env", shell_complete=_complete("env"), help="Environment with an expert: pusht or roboimi.")
@click.option("--objective", shell_complete=_complete("objective"), help="Training objective (default: the head's own).")
@click.option("--dataset", type=click.Path(path_type=Path), help="Starting data (default: the env's default dataset).")
@click.option("--rounds", type=click.IntRange(min=1), help="DAgger rounds after Phase I.")
@click.option("--episodes", type=click.IntRange(min=1), help="Policy rollouts labelled by the teacher per round.")
@click.option("--teacher", metavar="expert|CKPT",
              help="Who labels: the env's scripted expert (default), or a polx checkpoint (a .ckpt file or a run directory) of any head, "
                   "observing in its own obs type (a keypoints teacher of an image student).")  # fmt: skip
@click.option("--logger", "loggers", multiple=True, shell_complete=_complete("logger"), help="Extra logger (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True, help="Root of run directories.")
@click.option("--run-dir", type=click.Path(path_type=Path), help="Exact run directory (default: OUT/<date>/<time>_<head>_<env>_dagger).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), help="Continue a killed dagger run from its last finished stage.")
@_backend_option("labelled rollouts and test rollouts")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def dagger(head, env, objective, dataset, rounds, episodes, teacher, loggers, out, run_dir, resume_dir, backend, overrides) -> None:
    """DAgger: train, then round after round roll the policy out, let a teacher label every
    state it visited, add those steps to the data and keep training.

    \b
    The teacher is the env's scripted expert, or with --teacher CKPT a trained polx policy
    (any head) that sees its own observation of the state: a privileged keypoints teacher
    labels an image student. It labels each step afresh from its own observation history.
    Phase I trains on the starting data (dagger.phase1=dataset), or, with a checkpoint teacher
    and dagger.phase1=unrolls, on episodes driven by the teacher and by its intermediate
    checkpoints (dagger.phase1_checkpoints), every step labelled by the teacher (LucidSim).
    Each round r then:
      1. rolls the policy out on --episodes fresh seeds (eval.n_envs workers), the teacher
         acting instead with probability dagger.beta * dagger.beta_decay^(r-1);
      2. writes all data so far as RUN/data/round_<r>.zarr (the teacher's action is the label;
         with a checkpoint teacher also RUN/data/rollouts_<r>.zarr with its observations);
      3. trains dagger.steps_per_round more steps from round r-1's checkpoint on it, with
         Phase I's normaliser (dagger.normalizer) and its own LR schedule (dagger.schedule);
      4. scores the policy on the eval.n_test test seeds.
    Examples (PushT):
      polx dagger --head imf_attnres --env pusht --rounds 5 --episodes 20 \\
                  env.obs_type=keypoints train.max_steps=5000 dagger.steps_per_round=2000
      polx dagger --head imf_attnres --env pusht --teacher runs/<keypoints run> --rounds 3 \\
                  --episodes 20 env.obs_type=image dagger.phase1=unrolls dagger.phase1_checkpoints=[all] dagger.beta=0
      polx dagger --resume runs/<date>/<time>_imf_attnres_pusht_dagger      # after a kill
    dagger.* keys: beta (0.5), beta_decay (0.5), steps_per_round (2000), start_seed (200000),
    disagreement (0.1), max_steps (eval.max_steps), phase1 (dataset), phase1_checkpoints,
    phase1_unrolls (10), phase1_seed (300000), unroll_trim (none), label (auto), normalizer (keep),
    schedule (restart), round_lr_scale (0.25), round_warmup_steps (100); each is documented in
    core/polx/dagger/config.py.
    Writes RUN/rounds.json, RUN/summary.json (the per-round table) and RUN/media/score_by_round.png.
    """
    from polx.dagger import prepare_dagger, run_dagger

    plan = prepare_dagger(
        _plugins(), head=head, env=env, objective=objective, dataset=dataset, rounds=rounds, episodes=episodes, teacher=teacher,
        loggers=loggers, out=out, run_dir=run_dir, resume_dir=resume_dir, overrides=_with_backend(overrides, backend), argv=sys.argv,
    )  # fmt: skip
    run_dagger(plan)


# ---------------------------------------------------------------------------------------------
# sweep


@main.command()
@click.option("--head", required=True, shell_complete=_complete("head"), help="Network head.")
@click.option("--env", required=True, shell_complete=_complete("env"), help="Environment.")
@click.option("--objective", shell_complete=_complete("objective"), help="Training objective (default: the head's own).")
@click.option("--dataset", type=click.Path(path_type=Path), help="Zarr replay buffer for every run.")
@click.option("--grid", "grids", multiple=True, required=True, metavar="KEY=V1,V2,...", help="A swept key and its values (repeatable).")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True, help="Runs at once.")
@click.option("--metric", default="test_mean_score", show_default=True, help="Primary metric for the heatmap.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True, help="Root; the sweep lives in OUT/sweeps/NAME.")
@click.option("--name", help="Sweep name (default: head, env and a hash of the grid and overrides).")
@click.option("--shard", metavar="I/N", help="Run only cells I, I+N, I+2N, ... (spread one grid over N machines).")
@click.option("--summarize-only", is_flag=True, help="Write summary.csv and heatmap.png from finished cells; train nothing.")
@click.option("--logger", "loggers", multiple=True, help="Extra logger for every run (repeatable).")
@_backend_option("cells", local="local processes (--parallel at once, the default)",
                 ray="Ray tasks of exec.cpus_per_cell CPUs and exec.gpus_per_cell GPUs each")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def sweep(head, env, objective, dataset, grids, parallel, metric, out, name, shard, summarize_only, loggers, backend, overrides) -> None:
    """Train a grid of configurations, K at a time; finished runs are skipped on re-run.

    \b
    Example (3x3 grid, 3 runs at once):
      polx sweep --head imf_attnres --env pusht --grid head.n_emb=128,256,384 \\
                 --grid head.n_layer=6,12,18 --parallel 3 train.max_steps=5000
    Writes OUT/sweeps/NAME/<cell>/ run directories, summary.csv and heatmap.png (METRIC).
    On several machines sharing OUT: the same command with --shard 0/3, 1/3, 2/3, one per
    machine, then --summarize-only once they are done. Or on a Ray cluster (OUT on a filesystem
    every node sees), each cell a Ray task with exec.cpus_per_cell / exec.gpus_per_cell:
      polx sweep ... --backend ray exec.ray_address=auto exec.gpus_per_cell=1
    """
    import hashlib

    from polx.runs import prepare_training
    from polx.sweep import cell_status, cells, lock_shard, parse_grid, parse_shard, run_cells, summarize, sweep_name

    overrides = _with_backend(overrides, backend)
    grid = parse_grid(grids)
    index, count = parse_shard(shard)
    plugins_ = _plugins(warn_broken=True)
    base_args = ["--head", head, "--env", env]
    if objective:
        base_args += ["--objective", objective]
    if dataset:
        base_args += ["--dataset", str(dataset)]
    for lg in loggers:
        base_args += ["--logger", lg]
    digest = hashlib.sha1(json.dumps([base_args, grid, list(overrides)]).encode()).hexdigest()[:8]
    root = out / "sweeps" / (sweep_name(name) if name is not None else f"{head}_{env}_{digest}")
    all_cells = cells(grid, root)
    plans = [  # every cell's config must resolve before anything is written
        prepare_training(plugins_, head=head, env=env, objective=objective, dataset=dataset, loggers=loggers,
                         out=out, overrides=[*overrides, *cell.overrides])
        for cell in all_cells
    ]
    if not summarize_only:
        # the env's cached demos (one per distinct env config), made here, not raced for by K runs
        for env_cfg in {p.config.env for p in plans if p.config.data.path is None}:
            plugins_.registry.get("env", env).build(env_cfg).default_dataset(progress=True)
    if not summarize_only:
        mine = [c for i, c in enumerate(all_cells) if i % count == index]
        todo = [c for c in mine if cell_status(c) != "finished"]
        ex = plans[0].config.exec
        pace = f"as Ray tasks of {ex.cpus_per_cell:g} CPU, {ex.gpus_per_cell:g} GPU" if ex.backend == "ray" else f"{parallel} at once"
        click.echo(f"sweep {root}: {len(all_cells)} cells, {len(mine) - len(todo)} finished, running {len(todo)} ({pace})")
        root.mkdir(parents=True, exist_ok=True)
        shard_lock = lock_shard(root, index, count)  # the same sweep started twice: the second stops here
        try:
            codes = run_cells(todo, base_args, list(overrides), parallel, root / "logs", ex)
        finally:
            shard_lock.release()
        failed = [label for label, code in codes.items() if code != 0]
    else:
        failed = []
    root.mkdir(parents=True, exist_ok=True)
    csv_path, png = summarize(all_cells, grid, root, metric)
    click.echo(f"summary: {csv_path}")
    click.echo(f"heatmap: {png}" if png else f"heatmap: none yet (no finished cell reports {metric})")
    if failed:
        raise PolxError(f"{len(failed)} run(s) failed: {', '.join(failed)}; logs in {root / 'logs'}; re-run the same command to retry")


# ---------------------------------------------------------------------------------------------
# eval


@main.command("eval")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="A .ckpt written by polx train.")
@click.option("--policy", "policy", metavar="DIR|ws://HOST:PORT", help="A directory written by polx export, or a polx serve server.")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), help="With --policy DIR: run it with torch (default) or onnxruntime (needs export --onnx).")
@click.option("--episodes", type=click.IntRange(min=1), help="Test episodes (default: the run's eval.n_test).")
@click.option("--seed", type=int, help="First test seed (default: the run's eval.test_start_seed, 100000).")
@click.option("--out", type=click.Path(path_type=Path), help="Output directory (default: <run>/eval/<time>, <DIR>/eval/<time>, or eval/<time> for a server).")
@_backend_option("episodes")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def eval_cmd(
    checkpoint: Path | None, policy: str | None, runtime: str | None, episodes: int | None, seed: int | None, out: Path | None,
    backend: str | None, overrides: tuple[str, ...],
) -> None:  # fmt: skip
    """Roll out a checkpoint with its saved config, or an exported or served policy; print metrics,
    write metrics.json and PNGs.

    \b
    Examples:
      polx eval --checkpoint runs/<date>/<run>/checkpoints/latest.ckpt
      polx eval --policy exported/pusht --runtime onnx --episodes 50
      polx eval --policy ws://robot-pc:8000            # a policy served by polx serve
      polx eval --checkpoint CKPT --backend ray eval.n_envs=16 exec.ray_address=auto   # on a Ray cluster
    """
    overrides = _with_backend(overrides, backend)
    if (checkpoint is None) == (policy is None):
        raise UserInputError("pass exactly one of --checkpoint CKPT and --policy DIR|ws://HOST:PORT")
    if checkpoint is not None:
        if runtime is not None:
            raise UserInputError("--runtime applies to --policy DIR; a checkpoint is evaluated with torch")
        from polx.eval.evaluate import evaluate_checkpoint

        evaluate_checkpoint(_plugins(warn_broken=True), checkpoint, episodes=episodes, seed=seed, out=out, overrides=overrides)
        return
    from polx.deploy.evaluate import evaluate_policy

    evaluate_policy(_plugins(warn_broken=True), policy, runtime=runtime, episodes=episodes, seed=seed, out=out, overrides=overrides)


# ---------------------------------------------------------------------------------------------
# deploy


@main.command("export")
@click.argument("source", type=click.Path(path_type=Path), metavar="RUN_DIR|CKPT")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Directory to create (must not exist).")
@click.option("--onnx", "onnx", is_flag=True, help="Also write policy.onnx: the sampler as one graph, normalisation inside (imf).")
def export_cmd(source: Path, out: Path, onnx: bool) -> None:
    """Write a trained policy as a self-contained directory: model.safetensors (EMA weights when
    kept), config.json, README.md model card and, with --onnx, policy.onnx. No pickle.

    \b
    Examples:
      polx export runs/<date>/<run> --out exported/pusht --onnx
      python -c "import polx; p = polx.load_policy('exported/pusht', runtime='onnx')"
      polx serve exported/pusht --port 8000
    """
    from polx.deploy.export import export_policy

    info = export_policy(_plugins(warn_broken=True), source, out, onnx=onnx)
    files = ["model.safetensors", "config.json", "README.md"] + (["policy.onnx"] if info["onnx"] else [])
    click.echo(f"exported {info['plugins']['head']['name']} ({info['weights']} weights, step {info['global_step']}) to {out}: {', '.join(files)}")


@main.command("serve")
@click.argument("directory", type=click.Path(path_type=Path), metavar="DIR")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port (0: a free one, printed).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True, help="Run the policy with torch or onnxruntime.")
@click.option("--device", default="cpu", show_default=True, help="torch runtime: cpu or cuda.")
def serve_cmd(directory: Path, port: int, host: str, runtime: str, device: str) -> None:
    """Serve an exported policy over a websocket: msgpack numpy payloads, one session per client.

    \b
    Each client is sent the policy's metadata on connect, keeps its own observation history,
    and gets server timing with every reply; GET http://HOST:PORT/healthz answers 200.
    Clients: polx.PolicyClient("ws://HOST:PORT"), or polx eval --policy ws://HOST:PORT.
    """
    from polx.deploy.load import load_policy
    from polx.deploy.server import PolicyServer, check_port

    check_port(host, port)  # a busy port is reported before the policy loads
    plugins = _plugins(warn_broken=True) if runtime == "torch" else None
    policy = load_policy(directory, runtime, device=device, plugins=plugins)
    server = PolicyServer(policy, host, port)

    def ready(bound: int) -> None:
        click.echo(f"polx serve: {directory} ({runtime}) on ws://{host}:{bound} (health: http://{host}:{bound}/healthz); Ctrl-C stops", err=True)

    server.run(on_ready=ready)


# ---------------------------------------------------------------------------------------------
# data


@main.group()
def data() -> None:
    """Create, inspect and convert demonstration datasets (zarr, hdf5 episode directories, LeRobot)."""


@data.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--dataset-format", "fmt", help="Format to open PATH as (default: detected): zarr, hdf5, lerobot or a plugin's.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def data_info(path: Path, fmt: str | None, as_json: bool) -> None:
    """Format, episodes, steps, episode-length stats, cameras with image sizes, every array's shape and dtype.

    \b
    Examples:
      polx data info data/pusht_cchi_v7_replay.zarr
      polx data info my_act_episodes/ --json      # a directory of episode_N.hdf5 files
    """
    from polx.data.formats import describe_reader, info_dict, open_dataset

    reader = open_dataset(path, fmt, registry=_plugins().registry)
    click.echo(json.dumps(info_dict(reader)) if as_json else describe_reader(reader))


VIDEO_HELP = (
    "Store camera frames as one H.264 mp4 per camera (--to/--format lerobot), as published LeRobot datasets do: "
    "20x smaller on RoboIMI's cameras, lossy (mean abs error 1.2/255 there). Default: lossless PNG in the parquet rows."
)


@data.command("convert")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--to", "to", default="zarr", show_default=True, help="Output format: zarr, hdf5 or lerobot (or a plugin's that can write).")
@click.option("--dataset-format", "fmt", help="Format to open SRC as (default: detected).")
@click.option("--video", is_flag=True, help=VIDEO_HELP)
def data_convert(src: Path, out: Path, to: str, fmt: str | None, video: bool) -> None:
    """Copy the dataset SRC into a new dataset OUT in another format, every array exactly
    (camera frames excepted with --video: H.264 is lossy).

    \b
    OUT must not exist; it appears only when every episode is written. Prints a JSON summary.
    Examples:
      polx data convert act_episodes/ act.zarr                     # HDF5 episodes -> zarr
      polx data convert data/pusht.zarr pusht_lerobot --to lerobot
      polx data convert act_episodes/ act_lerobot --to lerobot --video   # cameras as mp4
    """
    from polx.data.convert import convert_dataset

    summary = convert_dataset(src, out, to, registry=_plugins().registry, src_format=fmt, progress=True, video=video)
    click.echo(json.dumps(summary))


@data.command("generate")
@click.option("--env", required=True, shell_complete=_complete("env"), help="Environment whose expert makes the demos.")
@click.option("--episodes", required=True, type=click.IntRange(min=1), help="How many episodes to write.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Zarr store to create (must not exist).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first episode.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes.")
@click.option("--keep-all", is_flag=True, help="Keep failed episodes too (default: successful ones only).")
@click.option("--format", "fmt", default="zarr", show_default=True, help="Output format: zarr (replay buffer), hdf5 (ACT episode directory) or lerobot.")
@click.option("--video", is_flag=True, help=VIDEO_HELP)
@click.argument("overrides", nargs=-1, metavar="[env.KEY=VALUE]...")
def data_generate(env: str, episodes: int, out: Path, seed: int, workers: int, keep_all: bool, fmt: str, video: bool, overrides: tuple[str, ...]) -> None:
    """Write expert demonstrations (the replay-buffer layout, or --format hdf5 / lerobot).

    \b
    Example (the RoboIMI flow: ACT episode files with cameras r_vis, top, front):
      polx data generate --env roboimi --episodes 50 --out data/roboimi_act --format hdf5
      polx train --head imf_attnres --env roboimi --dataset data/roboimi_act
    """
    from polx.data.convert import generate_in_format
    from polx.runs import build_env_adapter

    if out.exists():
        raise UserInputError(f"--out {str(out)!r} already exists; choose a new path (nothing was written)")
    plugins = _plugins(warn_broken=True)
    adapter = build_env_adapter(plugins, env, overrides)
    summary = generate_in_format(
        adapter, out, fmt, registry=plugins.registry, video=video, episodes=episodes, seed=seed, workers=workers, keep_all=keep_all, progress=True
    )
    click.echo(json.dumps(summary))


# ---------------------------------------------------------------------------------------------
# plot


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--metric", "metrics", multiple=True, help="Metric to plot (repeatable; default: train and val loss in one panel, lr, test score and success rate in one panel).")
@click.option("--out", type=click.Path(path_type=Path), help="PNG path (default: RUN_DIR/media/curves.png).")
def plot(run_dir: Path, metrics: tuple[str, ...], out: Path | None) -> None:
    """Training curves from RUN_DIR/logs.json.txt as a PNG."""
    from polx.plot import plot_run

    path = plot_run(run_dir, metrics=list(metrics) or None, out=out)
    click.echo(str(path))


from polx.check import check as _check  # noqa: E402  (its heavy imports are inside the command)

main.add_command(_check)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR...")
@click.option("--out", type=click.Path(path_type=Path), default=Path("compare"), show_default=True, help="Directory for the CSV and Markdown tables.")
def compare(run_dirs: tuple[Path, ...], out: Path) -> None:
    """Tables for a study: val_loss by step, sampled action MAE per step count, runtime and memory.

    \b
    Example (the four action-expert modes at one budget):
      polx compare runs/study/shared runs/study/split_independent ... --out runs/study/tables
    Writes OUT/val_loss.csv, OUT/sample_mae.csv, OUT/runtime.csv and OUT/compare.md (printed).
    """
    from polx.compare import compare_runs

    click.echo(compare_runs(list(run_dirs), out))
    click.echo(f"tables: {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
