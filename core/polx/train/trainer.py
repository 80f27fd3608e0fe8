"""``polx train``: validate everything, then train, validate, roll out, log and checkpoint.

Order matters for trust: everything that can fail on the user's input (dataset, config values,
encoder weights file, the checkpoint to resume from) is checked before the run directory is
created, so a bad command leaves nothing behind. During training a non-finite loss stops the run
naming the step, with the last good checkpoint untouched; checkpoints are written atomically.

Several processes (torchrun) share the work as ``distributed.py`` explains; rank 0 alone logs,
validates, rolls out and writes checkpoints.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from polx import logdispatch
from polx.version import __version__
from polx.components import Run
from polx.errors import DatasetError, PolxError, UserInputError
from polx.eval.metrics import is_rollout_metric, stage_line
from polx.eval.rollout import run_rollouts
from polx.jsonlog import LOG_NAME
from polx.policy.policy import Policy, build_policy, spec_summary
from polx.runlock import RUN_LOCK, RunDirLock
from polx.runs import TrainingPlan
from polx.strictjson import dumps_flagged
from polx.train import distributed
from polx.base.checkpoint import (
    LATEST,
    atomic_write,
    TopK,
    check_compatible,
    check_complete,
    first_line,
    link_checkpoint,
    load_checkpoint,
    load_weights,
    remove_stale_temp_files,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from polx.train.data import EpochBatches, fixed_batches, load_training_data, make_loader
from polx.train.ema import EMA
from polx.train.reproduce import peak_memory_mb, write_reproduction
from polx.base.run_dir import create_run_dir, manifest, record_resume, unique_dir
from polx.train.schedule import lr_at, set_lr
from polx.train.val_metrics import cross_group_attention, group_loss_metrics, sample_mae
from polx.train.warmstart import warm_start


#: before the first ``train.log_every`` line, a progress line once a step has kept the user waiting this long
FIRST_PROGRESS_S = 10.0
#: forward+backward frames/s of each image backbone at 84x84 on 2 CPU cores (benchmarks/bench_encoder.py,
#: benchmarks/README.md "Vision on a CPU"); the cost of other sizes scales with the pixel count
CPU_FRAMES_PER_S_AT_84 = {"resnet18": 41.0, "convnet": 211.0}
#: warn at start when the encoder alone is projected to take longer than this on a CPU
CPU_IMAGE_HOURS = 4.0


def run_training(plan: TrainingPlan) -> Path:
    """Train as ``plan`` says; returns the run directory.

    Rank 0 holds the run directory's lock from before a resume reads its checkpoint (a fresh run:
    from the moment its directory exists) until the run ends, so one directory has one writer.
    """
    info, device = distributed.init_from_env(plan.config.train.device)
    lock = RunDirLock()
    try:
        if plan.resume and info.is_main:
            lock.acquire(plan.run_dir)  # writes nothing: a resume refused below leaves the run untouched
        return Trainer(plan, info, device, lock).fit()
    finally:
        lock.release()
        distributed.shutdown(info)


def _make_dir(path: Path, exist_ok: bool) -> bool:
    """``mkdir -p``; False when it exists and ``exist_ok`` is false; a path polx cannot create is a UserInputError."""
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        if exist_ok:  # a file where the directory should be
            raise UserInputError(f"run directory {str(path)!r} exists and is not a directory") from None
        return False
    except OSError as exc:
        raise UserInputError(f"cannot create the run directory {str(path)!r}: {exc.strerror}; choose another --out/--run-dir") from None
    return True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: Policy, train_cfg: Any, encoder_cfg: Any) -> torch.optim.AdamW:
    """AdamW over the head's own parameter groups plus the encoder with its own weight decay."""
    groups = list(model.head.get_optim_groups(train_cfg.weight_decay))
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    if encoder_params:
        groups.append({"params": encoder_params, "weight_decay": encoder_cfg.weight_decay})
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if len(grouped) != len(set(grouped)) or set(grouped) != trainable:
        raise PolxError("the head's get_optim_groups() must list each trainable head parameter exactly once")
    return torch.optim.AdamW(groups, lr=train_cfg.lr, betas=tuple(train_cfg.betas))


class _Window:
    """Means of the training loss and the objective's metrics since the last log line.

    Tensor metrics are summed on their device and read once per log line, not once per step.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Any] = defaultdict(float)
        self.count = 0

    def add(self, loss: float, metrics: dict) -> None:
        self.sums["train_loss"] += loss
        for key, value in metrics.items():
            value = value.detach() if isinstance(value, torch.Tensor) else float(value)
            self.sums[key if key.startswith("train") else f"train/{key}"] += value
        self.count += 1

    def pop(self) -> dict[str, float]:
        out = {k: float(v) / self.count for k, v in self.sums.items()} if self.count else {}
        self.sums.clear()
        self.count = 0
        return out


class Trainer:
    def __init__(self, plan: TrainingPlan, info: distributed.DistInfo, device: torch.device, lock: RunDirLock | None = None):
        self.plan, self.info, self.device = plan, info, device
        self.lock = lock or RunDirLock()
        self.plugins = plan.plugins
        self.cfg = cfg = plan.config
        t = cfg.train  # cross-field checks (min_lr <= lr, ...) ran when TrainConfig was built
        if t.threads is not None:
            torch.set_num_threads(t.threads)
        seed_everything(t.seed + info.rank)

        self.adapter = self.plugins.build_env(cfg)
        self.shape_meta = self.adapter.shape_meta
        self.data = load_training_data(self._dataset_path(), self.adapter, cfg, self.plugins.registry)
        if len(self.data.train) < info.world_size:
            raise DatasetError(
                f"dataset {str(self.data.path)!r}: {len(self.data.train)} training windows for {info.world_size} processes"
            )
        self.model = build_policy(self.plugins, cfg, self.shape_meta, self.data.normalizer).to(device)
        if t.init_from is not None and not plan.resume:  # a resume's checkpoint already holds everything
            warm_start(self.model, Path(t.init_from))
        self.spec = spec_summary(cfg, self.shape_meta)
        self.optimizer = make_optimizer(self.model, t, cfg.encoder)
        self.ema = None
        if t.ema and info.is_main:
            copy_ = build_policy(self.plugins, cfg, self.shape_meta, copy.deepcopy(self.data.normalizer)).to(device)
            copy_.load_state_dict(self.model.state_dict())
            self.ema = EMA(copy_, power=t.ema_power, max_value=t.ema_max)
        self.val_batches = fixed_batches(self.data.val, t.batch_size, t.val_batches, cfg.data.split_seed) if self.data.val else []

        self.step = self.epoch = self.batch_in_epoch = 0
        self.train_time = 0.0  # seconds spent in training steps (not validation, rollouts or saving)
        self.last_rollout_step = -1
        self.final_metrics: dict[str, float] = {}  # the latest rollout and validation figures
        self.run_warnings: list[str] = []  # what went wrong without stopping the run (in summary.json)
        self.out_of_time = False  # train.max_minutes reached: the run ends before max_steps
        self._written_now: tuple[int, Path] | None = None  # (step, top-k file) whose state is the current one
        # the run directory: a resume continues plan.run_dir; a new run's is made in _open_run_dir
        self.run_dir = plan.run_dir
        self.ckpt_dir = plan.run_dir / "checkpoints"
        self.topk = TopK(self.ckpt_dir, t.topk)
        resume_state = self._load_resume_state() if plan.resume else None
        if resume_state is not None:
            self._restore(resume_state)
        distributed.broadcast_module(self.model, info)  # every rank starts from rank 0's weights
        self.show_progress = t.progress and info.is_main and sys.stderr.isatty()
        # under nohup or a scheduler there is no bar: one plain line per log_every steps instead
        self.print_progress = t.progress and info.is_main and not self.show_progress
        if resume_state is not None:
            self._restore_rng(resume_state)  # last, after every random initialisation

    @property
    def eval_policy(self) -> Policy:
        """The EMA weights when kept (what evaluation uses), else the trained weights."""
        return self.ema.model if self.ema is not None else self.model

    # -----------------------------------------------------------------------------------------
    # setup (nothing is written here)

    def _dataset_path(self) -> Path:
        if self.cfg.data.path is not None:
            return Path(self.cfg.data.path)
        # the env's cached demos: rank 0 generates them on first use while the others wait
        if self.info.is_main:
            path = self.adapter.default_dataset(progress=self.cfg.train.progress)
            distributed.barrier(self.info)
        else:
            distributed.barrier(self.info)
            path = self.adapter.default_dataset(progress=False)
        return Path(path)

    def _load_resume_state(self) -> dict:
        path = self.ckpt_dir / LATEST
        state = load_checkpoint(path)
        check_complete(state, path)
        check_compatible(state, self.spec, path)
        step = int(state["global_step"])
        if step >= self.cfg.train.max_steps and (self.plan.run_dir / "summary.json").is_file():
            raise UserInputError(
                f"--resume: the run already reached step {step} >= train.max_steps={self.cfg.train.max_steps}; "
                f"pass a larger train.max_steps=... to extend it"
            )
        return state

    def _restore(self, state: dict) -> None:
        """Everything a checkpoint holds except the RNG: weights, optimizer, EMA, counters, metrics."""
        path = self.ckpt_dir / LATEST
        load_weights(self.model, state["model"], path)
        fresh = [{"betas": g["betas"], "weight_decay": g["weight_decay"]} for g in self.optimizer.param_groups]
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise UserInputError(f"checkpoint {str(path)!r}: optimizer state does not fit this model: {exc}") from None
        for group, hparams in zip(self.optimizer.param_groups, fresh):
            group.update(hparams)  # the config (with the resume's overrides) decides hyperparameters
        if self.ema is not None and state.get("ema") is not None:
            load_weights(self.ema.model, state["ema"]["model"], path)
            self.ema.optimization_step = int(state["ema"]["optimization_step"])
        self.step, self.epoch, self.batch_in_epoch = int(state["global_step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        # a run killed after its final checkpoint only has to finish
        self.last_rollout_step = int(state.get("last_rollout_step", -1))
        self.final_metrics = dict(state.get("final_metrics", {}))
        self.train_time = float(state.get("train_time", 0.0))

    def _restore_rng(self, state: dict) -> None:
        """Last step of setup, after every random initialisation, so training continues exactly."""
        if self.info.is_main:
            set_rng_state(state["rng"])
        else:  # only rank 0's RNG is saved; the others restart from a reproducible seed
            seed_everything(self.cfg.train.seed + self.info.rank + self.step)

    # -----------------------------------------------------------------------------------------
    # the run

    def fit(self) -> Path:
        if self.info.is_main:
            self._open_run_dir()
        run_dir = self.run_dir
        run = Run(
            dir=run_dir,
            name=run_dir.name,
            config=self.cfg.to_dict(),
            resumed=self.plan.resume,
            resume_step=self.step if self.plan.resume else None,
        )
        if self.info.is_main:
            logdispatch.open_loggers(self.plugins, run, self.cfg)
            print(f"polx: {'resuming' if self.plan.resume else 'training'} in {run_dir} from step {self.step}", file=sys.stderr)
            self._warn_cost()
        try:
            self._loop(run)
        finally:
            if self.info.is_main:
                logdispatch.close_loggers(run)
        if self.info.is_main:
            self._report(run_dir)
        distributed.barrier(self.info)
        return run_dir

    def _warn_cost(self) -> None:
        """Image observations on a CPU at GPU-sized budgets take days: project the encoder's hours and say so before the first step."""
        t, enc = self.cfg.train, self.cfg.encoder
        cameras = {key: meta for key, meta in self.shape_meta.get("obs", {}).items() if meta.get("type") == "rgb"}
        if self.device.type != "cpu" or not cameras or enc.backbone not in CPU_FRAMES_PER_S_AT_84:
            return
        steps = t.max_steps - self.step
        seconds = 0.0
        for meta in cameras.values():
            h, w = tuple(enc.crop_shape) if enc.crop_shape is not None else tuple(meta["shape"][-2:])
            rate = CPU_FRAMES_PER_S_AT_84[enc.backbone] * (84 * 84) / (h * w)
            seconds += steps * t.batch_size * self.cfg.policy.n_obs_steps / rate
        if seconds / 3600 > CPU_IMAGE_HOURS:
            faster = " or encoder.backbone=convnet (about 5x faster)" if enc.backbone == "resnet18" else ""
            print(
                f"polx: warning: {steps:,} steps of the {enc.backbone} encoder on image observations ({', '.join(cameras)}) "
                f"on a CPU project to about {seconds / 3600:.0f} hours on 2 cores, the encoder alone (benchmarks/README.md, "
                f"\"Vision on a CPU\"); the first progress lines give the ETA. For a CPU, lower train.max_steps{faster}, "
                "start from a CPU recipe (configs/*_cpu.yaml), or train on a GPU (train.device=cuda)",
                file=sys.stderr,
                flush=True,
            )

    def _say(self, text: str) -> None:
        """One progress line on stderr (above the bar on a TTY, plain in a log file)."""
        if self.show_progress:
            tqdm.write(f"polx: {text}", file=sys.stderr)
        elif self.print_progress:
            print(f"polx: {text}", file=sys.stderr, flush=True)

    def _report(self, run_dir: Path) -> None:
        """``summary.json`` (what sweeps read), the curves PNG, and where everything is."""
        summary = {"status": "finished", "global_step": self.step, "epoch": self.epoch, "metrics": self.final_metrics}
        if self.out_of_time:
            summary["stopped"] = f"train.max_minutes={self.cfg.train.max_minutes:g} reached at step {self.step} of {self.cfg.train.max_steps}"
        if self.run_warnings:
            summary["warnings"] = list(self.run_warnings)
        atomic_write(run_dir / "summary.json", lambda f: f.write(dumps_flagged(summary, what="summary.json", indent=2).encode()))
        lines = [f"polx: finished {self.step} steps in {run_dir}"]
        if "test_mean_score" in self.final_metrics:
            lines.append(
                f"  test_mean_score {self.final_metrics['test_mean_score']:.3f}"
                + (f", success rate {self.final_metrics['test_success_rate']:.2f}" if "test_success_rate" in self.final_metrics else "")
            )
            stages = stage_line(self.final_metrics)
            if stages:
                lines.append(f"  {stages}")
        lines.append(f"  checkpoints   {run_dir / 'checkpoints'}")
        rollouts = sorted((run_dir / "media").glob("rollout_*"), key=lambda p: p.stat().st_mtime)
        if rollouts:
            lines.append(f"  trajectories  {rollouts[-1]}")
        if (run_dir / LOG_NAME).is_file():
            try:
                from polx.plot import plot_run

                lines.append(f"  curves        {plot_run(run_dir)}")
            except Exception as exc:  # a plot is a convenience; never fail a finished run on it
                lines.append(f"  curves        not drawn ({exc}); try polx plot {run_dir}")
        print("\n".join(lines), file=sys.stderr)

    def _open_run_dir(self) -> None:
        """Decide and take the run directory (the one place it is decided), then record the run in it."""
        if self.plan.resume:  # run_training already holds its lock
            self.lock.write_pid()
            remove_stale_temp_files(self.ckpt_dir)
            record_resume(self.run_dir, self.cfg, self.plan.argv, self.step, self.plugins)
            return
        if self.plan.exact_run_dir:  # --run-dir: absent or empty, used as it is
            run_dir = self.plan.run_dir
            _make_dir(run_dir, exist_ok=True)
            self.lock.acquire(run_dir)
            if any(p.name != RUN_LOCK for p in run_dir.iterdir()):
                raise UserInputError(f"--run-dir {str(run_dir)!r} exists and is not empty; use --resume to continue it")
        else:  # OUT/<date>/<time>_<head>_<env>, or _2, _3... when two runs start within one second
            while True:
                run_dir = unique_dir(self.plan.run_dir)
                if _make_dir(run_dir, exist_ok=False):
                    break
            self.lock.acquire(run_dir)
        self.lock.write_pid()
        extra = {
            "dataset": str(self.data.path),
            "device": str(self.device),
            "world_size": self.info.world_size,
            "episodes": {"train": self.data.n_train_episodes, "val": self.data.n_val_episodes},
        }
        create_run_dir(run_dir, self.cfg, manifest(self.plugins, self.plan.argv, extra))
        write_reproduction(run_dir, self.plan.argv)
        self.run_dir = run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        self.topk = TopK(self.ckpt_dir, self.cfg.train.topk)

    def _loop(self, run: Run) -> None:
        t = self.cfg.train
        batches = EpochBatches(len(self.data.train), t.batch_size, t.seed, self.info.rank, self.info.world_size)
        loader = make_loader(
            self.data.train, batches, num_workers=t.num_workers, seed=t.seed + self.info.rank, pin_memory=self.device.type == "cuda"
        )
        window = _Window()
        last_batch = None
        with tqdm(total=t.max_steps, initial=self.step, desc="train", unit="step", disable=not self.show_progress, dynamic_ncols=True) as bar:
            while self.step < t.max_steps and not self.out_of_time:
                batches.set_epoch(self.epoch, skip=self.batch_in_epoch)
                for batch in loader:
                    started = time.perf_counter()
                    loss, metrics = self._train_step(batch)
                    self.train_time += time.perf_counter() - started
                    self.step += 1
                    self.batch_in_epoch += 1
                    window.add(loss, metrics)
                    bar.update()
                    bar.set_postfix(loss=f"{loss:.4f}", epoch=self.epoch, refresh=False)
                    last_batch = batch
                    if self.info.is_main:
                        self._periodic(run, window, last_batch, bar)
                    if self.step >= t.max_steps or self._check_time():
                        break
                else:
                    self.epoch += 1
                    self.batch_in_epoch = 0
            if self.info.is_main:
                self._finish(run, window, last_batch)

    def _check_time(self) -> bool:
        """Whether ``train.max_minutes`` of training steps are spent (every rank decides alike)."""
        t = self.cfg.train
        if t.max_minutes is None or self.step % t.log_every:
            return False
        spent = distributed.mean_scalar(torch.tensor(self.train_time), self.info)  # ranks agree on one figure
        if spent >= t.max_minutes * 60 and not self.out_of_time:
            self.out_of_time = True
            if self.info.is_main:
                print(
                    f"polx: train.max_minutes={t.max_minutes:g} reached at step {self.step} of {t.max_steps}; finishing the run",
                    file=sys.stderr,
                    flush=True,
                )
        return self.out_of_time

    def _train_step(self, batch: dict) -> tuple[float, dict]:
        t = self.cfg.train
        self._written_now = None  # the state moves on: no checkpoint on disk matches it any more
        self.model.train()
        loss, metrics = self.model.compute_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        value = distributed.mean_scalar(loss, self.info)
        if not math.isfinite(value):
            latest = self.ckpt_dir / LATEST
            kept = f"the last good checkpoint is {latest}" if latest.is_file() else "no checkpoint had been written yet"
            raise PolxError(
                f"non-finite loss ({value}) at step {self.step + 1} (epoch {self.epoch}); training stopped and {kept}. "
                "Try a lower train.lr or train.grad_clip, or check the dataset for NaN/inf values"
            )
        distributed.average_gradients(self.model.parameters(), self.info)
        metrics = dict(metrics or {})
        if t.grad_clip > 0:
            metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        set_lr(self.optimizer, self._lr(self.step))
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return value, metrics

    def _lr(self, step: int) -> float:
        t = self.cfg.train
        start = t.schedule_start if step >= t.schedule_start else 0  # steps before it: the schedule from step 0
        return lr_at(step - start, lr=t.lr, min_lr=t.min_lr, warmup_steps=t.warmup_steps, max_steps=t.max_steps - start)

    def _log(self, run: Run, metrics: dict, images: dict | None = None) -> None:
        logdispatch.log(self.plugins, run, self.step, {**metrics, "epoch": self.epoch}, images or {})

    def _periodic(self, run: Run, window: _Window, last_batch: dict, bar: tqdm) -> None:
        t, ev, step = self.cfg.train, self.cfg.eval, self.step
        if self.print_progress and step % t.log_every and getattr(self, "_progress_mark", None) is None and self.train_time >= FIRST_PROGRESS_S:
            # slow steps: the user hears from the run before log_every steps are done
            self._print_progress({"train_loss": window.sums["train_loss"] / max(window.count, 1), "lr": self._lr(step - 1)})
        if step % t.log_every == 0:
            record = {**window.pop(), "lr": self._lr(step - 1), "train_time_s": self.train_time, "peak_memory_mb": peak_memory_mb(self.device.type)}
            self._log(run, record)
            if self.print_progress:
                self._print_progress(record)
        if t.val_every and step % t.val_every == 0:
            started = time.perf_counter()
            self._say(f"validation at step {step}: started ({len(self.val_batches)} batches)")
            val = self._validate(last_batch)
            shown = f", val_loss {val['val_loss']:.4f}" if "val_loss" in val else ""
            self._say(f"validation at step {step}: done in {time.perf_counter() - started:.1f}s{shown}")
            self.final_metrics.update(val)
            self._log(run, val)
        if ev.rollout_every and step % ev.rollout_every == 0:
            self._rollout(run)
        if t.checkpoint_every and step % t.checkpoint_every == 0 and step < t.max_steps:
            self._save_latest()

    def _print_progress(self, record: dict) -> None:
        """``step 1200/5000  loss 0.0412  lr 1.9e-03  8.3 steps/s  ETA 7m38s`` (steps/s over training steps only)."""
        t = self.cfg.train
        now = time.perf_counter()
        last = getattr(self, "_progress_mark", None)
        self._progress_mark = (now, self.step)
        if last is None or self.step <= last[1]:
            rate = self.step / self.train_time if self.train_time > 0 else float("nan")
        else:
            rate = (self.step - last[1]) / (now - last[0])  # wall clock: includes validation and rollouts
        eta = (t.max_steps - self.step) / rate if rate > 0 else float("nan")
        eta_text = f"{int(eta // 60)}m{int(eta % 60):02d}s" if math.isfinite(eta) else "?"
        print(
            f"polx: step {self.step}/{t.max_steps}  loss {record.get('train_loss', float('nan')):.4f}  "
            f"lr {record['lr']:.2e}  {rate:.2f} steps/s  ETA {eta_text}",
            file=sys.stderr,
            flush=True,
        )

    def _finish(self, run: Run, window: _Window, last_batch: dict | None) -> None:
        pending = window.pop()
        if pending:
            self._log(run, {**pending, "lr": self._lr(self.step - 1), "train_time_s": self.train_time, "peak_memory_mb": peak_memory_mb(self.device.type)})
        # the final weights are saved before the final rollout: a rollout that fails, or a kill
        # during it, never costs the trained model
        self._save_latest()
        if self.cfg.eval.at_end and self.last_rollout_step != self.step:
            self._rollout(run)
            self._save_latest()  # with the final scores: a resume after this only writes summary.json

    # -----------------------------------------------------------------------------------------
    # validation, rollouts, checkpoints (rank 0)

    @torch.no_grad()
    def _validate(self, train_batch: dict | None) -> dict[str, float]:
        """Teacher-forced ``val_loss``; sampled ``val_action_mse`` and ``train_action_mse_error``;
        per-group losses, sampled MAE at ``eval.sample_steps`` and cross-group attention (``val_metrics``).

        The loss uses the trained weights, the sampled errors the evaluation (EMA) weights, as
        diffusion_policy does. A forked RNG with a fixed seed makes the loss's noise the same at
        every validation, so the curve shows the model changing, not the noise.
        """
        t = self.cfg.train
        out: dict[str, float] = {}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(t.seed)
            self.model.eval()
            try:
                if self.val_batches:
                    results = [self.model.compute_loss(self.data.val.get_batch(idxs)) for idxs in self.val_batches]
                    out["val_loss"] = float(np.mean([float(loss) for loss, _ in results]))
                    out.update(group_loss_metrics([metrics or {} for _, metrics in results]))
                    first = self.data.val.get_batch(self.val_batches[0])
                    out["val_action_mse"] = self._action_mse(first)
                    groups = self.model.layout.groups if self.model.layout is not None else ()
                    out.update(sample_mae(self.eval_policy, first, self.cfg.eval.sample_steps, t.seed, groups))
                    out.update(cross_group_attention(self.eval_policy, first, t.seed))
                if train_batch is not None:
                    out["train_action_mse_error"] = self._action_mse(train_batch)
            finally:
                self.model.train()
        return out

    def _action_mse(self, batch: dict) -> float:
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed)
        policy = self.eval_policy
        was_training = policy.training
        policy.eval()
        pred = policy.predict_action(batch["obs"], num_steps=self.cfg.train.val_sample_steps, generator=generator)
        policy.train(was_training)
        return float(F.mse_loss(pred["action_pred"], batch["action"].to(self.device)))

    def _rollout(self, run: Run) -> None:
        """Roll out, log, offer the top-k. A failing rollout warns and the run goes on without a score."""
        ev = self.cfg.eval
        self.last_rollout_step = self.step
        if ev.n_test + ev.n_train == 0:
            return
        media = unique_dir(run.dir / "media" / f"rollout_{self.step}")
        started = time.perf_counter()
        self._say(f"rollouts at step {self.step}: started, {ev.n_test + ev.n_train} episodes in {ev.n_envs} process{'es' if ev.n_envs > 1 else ''}")
        try:
            result = run_rollouts(
                self.plugins, self.cfg, self.adapter, self.eval_policy, media_dir=media, progress=self.show_progress,
                say=self._say if self.print_progress else None,
            )
        except Exception as exc:
            # no score for this step, and none left over from an earlier one to pass for it
            self.final_metrics = {k: v for k, v in self.final_metrics.items() if not is_rollout_metric(k)}
            message = f"rollout at step {self.step} failed, no score recorded: {type(exc).__name__}: {first_line(exc)}"
            self.run_warnings.append(message)
            if len(self.run_warnings) == 1 or self.step == self.cfg.train.max_steps:
                warnings.warn(f"{message}; training goes on (the run's checkpoints are unaffected)", stacklevel=2)
            return
        self._log(run, {**result.metrics, "train_time_s": self.train_time}, result.images)
        self._say(f"rollouts at step {self.step}: done in {time.perf_counter() - started:.1f}s")
        if self.print_progress and "test_mean_score" in result.metrics:
            print(f"polx: step {self.step}  test_mean_score {result.metrics['test_mean_score']:.3f}", file=sys.stderr, flush=True)
        self.final_metrics.update(result.metrics)
        score = result.metrics.get("test_mean_score")
        if score is not None:
            kept = self.topk.offer(score, self.epoch, self.step, self._checkpoint_state)
            # nothing changes the state between here and the latest.ckpt write that follows a
            # rollout (periodic or final), so that write links this file instead of a second copy
            self._written_now = (self.step, kept) if kept is not None else None

    def _save_latest(self) -> None:
        started = time.perf_counter()
        fresh, self._written_now = self._written_now, None
        if fresh is not None and fresh[0] == self.step and fresh[1].is_file() and link_checkpoint(fresh[1], self.ckpt_dir / LATEST):
            self._say(f"checkpoint at step {self.step}: {LATEST} is {fresh[1].name} (the same state, linked, not written twice)")
            return
        self._say(f"checkpoint at step {self.step}: writing {LATEST}")
        save_checkpoint(self.ckpt_dir / LATEST, self._checkpoint_state())
        self._say(f"checkpoint at step {self.step}: written in {time.perf_counter() - started:.1f}s")

    def _checkpoint_state(self) -> dict:
        t = self.cfg.train
        return {
            "polx_version": __version__,
            "spec": self.spec,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {
                "kind": "warmup_cosine",
                "step": self.step,
                "lr": t.lr,
                "min_lr": t.min_lr,
                "warmup_steps": t.warmup_steps,
                "schedule_start": t.schedule_start,
                "max_steps": t.max_steps,
            },
            "global_step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": rng_state(),
            "last_rollout_step": self.last_rollout_step,
            "final_metrics": dict(self.final_metrics),
            "train_time": self.train_time,
        }
