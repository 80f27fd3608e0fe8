"""Kill drill: SIGKILL ``polx train`` at random moments, resume it, check nothing was lost or torn.

The run is the test suite's toy plugin (``tests/toy_plugin.py``, installed here as a fake
distribution on PYTHONPATH, as ``tests/test_sweep.py`` does) with a wide head, so a checkpoint is
tens of MB and its atomic write (temp file, fsync, rename) takes a good share of the run: random
kills land in startup, training steps, log writes, rollouts and checkpoint writes alike.

First one uninterrupted run gives the timing and the reference weights. Then, until ``--kills``
kills are done: start the run (or ``--resume`` it), SIGKILL or SIGTERM it (a coin toss) after a
delay drawn uniformly over the uninterrupted run's duration; a run that finishes before its kill
is verified and a new one begins. While a resumed process trains, a second ``--resume`` of the
same directory is started and must be refused (one writer per run directory). Checked after
every kill and resume:

- every ``*.ckpt`` in ``checkpoints/`` loads with ``polx.base.checkpoint.load_checkpoint``
  (weights_only), and ``latest.ckpt`` is never older than the last one seen before the kill;
- the resumed process starts exactly at that checkpoint's step (never further back);
- temp files of a killed write are gone once the resumed run has started;
- ``logs.json.txt``: every complete line parses, each metric's ``global_step`` increases (steps
  logged after the checkpoint by the killed process are superseded, not duplicated; a counter
  such as ``train_time_s`` may repeat on two records of one step with the same value);
- a finished run: ``summary.json``, the final step, every PNG readable, and (figure, not a
  failure) whether its weights equal the uninterrupted run's;
- last, a full disk: the reference run resumed with a file-size limit below one checkpoint
  (``RLIMIT_FSIZE``, so the kernel refuses the write as a full disk would) must exit 1 with a
  message, no traceback, and its ``latest.ckpt`` intact.

    python benchmarks/drill_kill_resume.py [--kills 20] [--seed 0] [--max-steps 300] [--checkpoint-every 10]

Prints one line per event, then one JSON line of figures; exits 1 when an invariant failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from PIL import Image

from polx.errors import UserInputError
from polx.base.checkpoint import LATEST, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


def toy_environment(work: Path) -> dict:
    """The toy plugin as an installed distribution (entry point ``toy``); the project's loggers stay."""
    site = work / "site"
    info = site / "polx_toy-0.0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: polx-toy\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[polx]\ntoy = toy_plugin\n")
    path = os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "POLX_DISABLE_PLUGINS": "envs,imf_attnres,ddpm_transformer",
            "OMP_NUM_THREADS": "1"}  # the trainer on one core, this driver on the other


def overrides(args, cache: Path) -> list[str]:
    return [
        f"env.cache_dir={cache}", f"head.hidden={args.hidden}", f"train.max_steps={args.max_steps}",
        "train.batch_size=16", "train.warmup_steps=10", "train.log_every=1", "train.val_every=25", "train.val_batches=1",
        f"train.checkpoint_every={args.checkpoint_every}", "train.topk=2", "train.progress=false",
        "policy.horizon=8", "policy.n_obs_steps=2", "policy.n_action_steps=4", "data.val_ratio=0.2",
        "eval.rollout_every=50", "eval.n_test=2", "eval.n_train=0", "eval.n_vis=1", "eval.max_steps=16",
    ]


class Process:
    """``polx train`` in the background; stderr is collected by a thread, so it never blocks."""

    def __init__(self, argv: list[str], env: dict, file_size_limit: int | None = None):
        self.started = time.perf_counter()

        def limit() -> None:  # a write past the limit fails with EFBIG, as one on a full disk fails with ENOSPC
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        self.proc = subprocess.Popen([sys.executable, "-m", "polx", "train", *argv], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=limit if file_size_limit else None)
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.perf_counter() - self.started, line.rstrip("\n")))

    def start_line(self) -> tuple[float, str] | None:
        """(seconds, line) of ``polx: training/resuming in ... from step N``, once printed."""
        return next(((t, s) for t, s in self.lines if s.startswith("polx: ") and " from step " in s), None)

    def finish(self) -> int:
        code = self.proc.wait()
        self.reader.join()
        return code

    def stderr(self) -> str:
        return "\n".join(s for _, s in self.lines)


def temp_files(run: Path) -> set[str]:
    """Files of interrupted atomic writes: checkpoint temps and the JSON log's rewrite temp."""
    found = {str(p) for p in run.rglob(".*.tmp")}
    return found | {str(p) for p in run.rglob("*.tmp")}


def check_checkpoints(run: Path, problems: list[str]) -> int | None:
    """Load every checkpoint (weights_only); returns latest.ckpt's global_step, or None if there is none."""
    step = None
    for path in sorted((run / "checkpoints").glob("*.ckpt")) if (run / "checkpoints").is_dir() else []:
        try:
            state = load_checkpoint(path)
        except UserInputError as exc:
            problems.append(f"corrupt checkpoint: {exc}")
            continue
        if path.name == LATEST:
            step = int(state["global_step"])
    return step


def check_log(run: Path, problems: list[str], allow_partial_last: bool) -> tuple[int, bool]:
    """Returns (highest global_step logged, whether the last line was partial)."""
    path = run / "logs.json.txt"
    if not path.is_file():
        return 0, False
    text = path.read_text()
    lines = text.splitlines()
    partial = bool(text) and not text.endswith("\n")
    last_step: dict[str, int] = {}
    last_value: dict[str, float] = {}
    highest = 0
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if not (partial and allow_partial_last and i == len(lines) - 1):
                problems.append(f"logs.json.txt line {i + 1} does not parse: {line[:80]!r}")
            continue
        step = record["global_step"]
        highest = max(highest, step)
        for key in record:
            if key in ("global_step", "epoch"):
                continue
            # a counter such as train_time_s rides on every record of a step: the same value again is no duplicate
            again = step == last_step.get(key) and record[key] == last_value.get(key)
            if step <= last_step.get(key, -1) and not again:
                problems.append(f"logs.json.txt line {i + 1}: {key} at step {step} after step {last_step[key]}")
            last_step[key], last_value[key] = step, record[key]
    return highest, partial


def check_finished(run: Path, args, problems: list[str]) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    if summary["status"] != "finished" or summary["global_step"] != args.max_steps:
        problems.append(f"summary.json: {summary}")
    state = load_checkpoint(run / "checkpoints" / LATEST)
    if state["global_step"] != args.max_steps:
        problems.append(f"final latest.ckpt is at step {state['global_step']}, not {args.max_steps}")
    check_log(run, problems, allow_partial_last=False)
    records = [json.loads(line) for line in (run / "logs.json.txt").read_text().splitlines()]
    train_steps = [r["global_step"] for r in records if "train_loss" in r]
    if train_steps != list(range(1, args.max_steps + 1)):
        problems.append(f"train_loss is not logged exactly once per step 1..{args.max_steps}")
    if temp_files(run):
        problems.append(f"temp files left in a finished run: {sorted(temp_files(run))}")
    for png in run.rglob("*.png"):
        try:
            with Image.open(png) as image:
                image.load()
        except Exception as exc:
            problems.append(f"unreadable image {png.relative_to(run)}: {exc}")
    return state


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Drill:
    """Runs ``run0``, ``run1``, ... under ``work``, killing and resuming; collects figures and problems."""

    def __init__(self, args, work: Path, env: dict, fresh_args: list[str], duration: float, reference: dict):
        self.args, self.work, self.env, self.fresh_args = args, work, env, fresh_args
        self.duration = duration  # of the uninterrupted run: kill delays are uniform over it
        self.reference = reference  # its final checkpoint
        self.rng = random.Random(args.seed)
        self.problems: list[str] = []
        self.figures = dict.fromkeys(
            ["kills", "kills_during_startup", "kills_mid_checkpoint_write", "kills_before_first_checkpoint",
             "kills_after_summary", "kills_with_partial_log_line", "kills_by_sigterm", "resumes", "runs_finished",
             "unresumable_after_final_checkpoint", "max_steps_lost", "steps_lost_total", "failed_processes",
             "second_writers_refused", "second_writers_undecided"], 0)
        self.weights_match: list[bool] = []
        self.run_index = 0
        self.seen_ckpt_step = -1  # latest.ckpt's step as last seen while a process ran
        self.stale: set[str] = set()  # temp files of killed writes, to be gone once a resume starts

    @property
    def run(self) -> Path:
        return self.work / f"run{self.run_index}"

    def next_run(self) -> None:
        self.run_index += 1
        self.seen_ckpt_step = -1
        self.stale = set()

    def attempt(self) -> bool:
        """Start or resume the current run, kill it after a random delay; False when the drill must stop."""
        run, fig = self.run, self.figures
        resume = (run / "checkpoints" / LATEST).is_file()
        expected_start = check_checkpoints(run, self.problems) if resume else 0
        delay = self.rng.uniform(0, self.duration)
        proc = Process(["--resume", str(run)] if resume else [*self.fresh_args, "--run-dir", str(run)], self.env)
        started = self.watch(proc, proc.started + delay, expected_start)
        fig["resumes"] += resume and started
        if resume and started and proc.proc.poll() is None:
            self.second_writer(proc)
        killed = proc.proc.poll() is None
        if killed:
            sig = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
            os.kill(proc.proc.pid, sig)
            fig["kills"] += 1
            fig["kills_by_sigterm"] += sig == signal.SIGTERM
            fig["kills_during_startup"] += not started
        code = proc.finish()

        if (run / "summary.json").is_file():  # finished; a kill now landed while curves.png was drawn
            fig["kills_after_summary"] += killed
            self.finished(f" (killed after summary.json, kill {fig['kills']})" if killed else "")
        elif killed:
            self.after_kill(delay, resume, started)
        elif code == 2 and resume and "already reached step" in proc.stderr():
            # an earlier kill fell between the final checkpoint and summary.json: trained, never marked finished
            fig["unresumable_after_final_checkpoint"] += 1
            self.problems.append(f"{run.name}: --resume refuses a run killed between its final checkpoint and summary.json")
            print(f"{run.name} cannot be resumed: its final checkpoint was written, summary.json was not", flush=True)
            self.next_run()
        else:
            fig["failed_processes"] += 1
            self.problems.append(f"polx train exited {code}:\n{proc.stderr()[-2000:]}")
            return False
        return True

    def second_writer(self, first: Process) -> None:
        """A second ``--resume`` of the run ``first`` is writing: refused, naming the holder, while ``first`` runs."""
        second = Process(["--resume", str(self.run)], self.env)
        code = second.finish()
        if code != 0 and "in use by another polx process" in second.stderr() and f"PID {first.proc.pid}" in second.stderr():
            self.figures["second_writers_refused"] += 1
        elif first.proc.poll() is not None:  # the first had finished or died by then: the second may rightly run
            self.figures["second_writers_undecided"] += 1
        else:
            self.problems.append(f"a second --resume of {self.run.name} was not refused while the first ran (exit {code}):\n"
                                 f"{second.stderr()[-1000:]}")

    def watch(self, proc: Process, deadline: float, expected_start: int) -> bool:
        """Until ``deadline`` or exit: check the start step and temp-file cleanup, follow latest.ckpt.

        Returns whether the process reached its first step (printed ``... from step N``).
        """
        run = self.run
        started, last_inode = False, None
        while proc.proc.poll() is None and time.perf_counter() < deadline:
            time.sleep(0.02)
            if not started and (line := proc.start_line()):
                started = True
                step = int(line[1].rsplit(" ", 1)[1])
                if step != expected_start:
                    self.problems.append(f"{run.name} started at step {step}, latest.ckpt was at step {expected_start}")
                left = sorted(p for p in self.stale if Path(p).exists())
                if left:
                    self.problems.append(f"temp files left after the resume started: {left}")
                self.stale = set()
            try:  # each atomic replace gives latest.ckpt a new inode
                inode = (run / "checkpoints" / LATEST).stat().st_ino
            except FileNotFoundError:
                continue
            if inode != last_inode:
                last_inode = inode
                try:
                    state = torch.load(run / "checkpoints" / LATEST, map_location="cpu", weights_only=True, mmap=True)
                    self.seen_ckpt_step = max(self.seen_ckpt_step, int(state["global_step"]))
                except FileNotFoundError:
                    pass
        return started

    def after_kill(self, delay: float, resume: bool, started: bool) -> None:
        run, fig = self.run, self.figures
        temps = temp_files(run)
        mid_write = any(".ckpt." in Path(p).name for p in temps - self.stale)  # .latest.ckpt.<hex>.tmp
        fig["kills_mid_checkpoint_write"] += mid_write
        progress, partial = check_log(run, self.problems, allow_partial_last=True)
        fig["kills_with_partial_log_line"] += partial
        ckpt_step = check_checkpoints(run, self.problems)
        if ckpt_step is None:
            fig["kills_before_first_checkpoint"] += 1
            lost, what = progress, "no checkpoint yet: the run starts over"
            shutil.rmtree(run, ignore_errors=True)  # --resume needs a checkpoint; --run-dir refuses a non-empty directory
            self.seen_ckpt_step = -1
        else:
            if ckpt_step < self.seen_ckpt_step:
                self.problems.append(f"{run.name}: latest.ckpt went back from step {self.seen_ckpt_step} to {ckpt_step}")
            # a resume killed before its first step lost nothing new (the log still holds the last process's lines)
            lost = max(0, progress - ckpt_step) if started or not resume else 0
            what = f"latest.ckpt at step {ckpt_step}"
            self.stale = temps
        fig["max_steps_lost"] = max(fig["max_steps_lost"], lost)
        fig["steps_lost_total"] += lost
        print(f"kill {fig['kills']:2d} at {delay:5.2f} s, {'training' if started else 'starting up'} "
              f"({'resume' if resume else 'fresh'} of {run.name}): logged up to step {progress}, {what}, {lost} steps lost"
              + (", mid checkpoint write" if mid_write else "") + (", partial log line" if partial else ""), flush=True)

    def finished(self, label: str) -> None:
        state = check_finished(self.run, self.args, self.problems)
        self.weights_match.append(same_weights(state["model"], self.reference["model"]))
        self.figures["runs_finished"] += 1
        print(f"{self.run.name} finished{label} at step {state['global_step']}; "
              f"weights equal the uninterrupted run's: {self.weights_match[-1]}", flush=True)
        self.next_run()

    def complete(self) -> None:
        """Resume the run in progress to its end and check it like the others."""
        if self.figures["failed_processes"] or not (self.run / "checkpoints" / LATEST).is_file():
            return
        proc = Process(["--resume", str(self.run)], self.env)
        if proc.finish() != 0:
            self.figures["failed_processes"] += 1
            self.problems.append(f"the final resume exited non-zero:\n{proc.stderr()[-2000:]}")
            return
        self.figures["resumes"] += 1
        self.finished("")


def full_disk(work: Path, env: dict, args, problems: list[str]) -> bool:
    """Resume a copy of the reference run with a file-size limit below one checkpoint: a message, exit 1, the old checkpoint kept."""
    run = work / "full_disk"
    shutil.copytree(work / "reference", run)
    (run / "summary.json").unlink()
    latest = run / "checkpoints" / LATEST
    before = latest.read_bytes()
    proc = Process(["--resume", str(run), f"train.max_steps={args.max_steps + args.checkpoint_every}"], env,
                   file_size_limit=latest.stat().st_size // 2)
    code = proc.finish()
    said = proc.stderr()
    ok = code == 1 and "could not write checkpoint" in said and "Traceback" not in said and latest.read_bytes() == before
    if not ok:
        problems.append(f"full disk: exit {code}, checkpoint kept: {latest.read_bytes() == before}:\n{said[-1500:]}")
    print(f"full disk during a checkpoint: exit {code}, {'message and old checkpoint kept' if ok else 'NOT handled'}", flush=True)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to deliver (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=65536, help="toy head width: sets the checkpoint size")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir, removed at the end)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="polx-drill-"))
    work.mkdir(parents=True, exist_ok=True)
    env = toy_environment(work)
    fresh_args = ["--head", "toy_mlp", "--env", "toy_reach", "--logger", "json", *overrides(args, work / "cache")]
    started = time.perf_counter()

    # the uninterrupted run: timing and reference weights
    proc = Process([*fresh_args, "--run-dir", str(work / "reference")], env)
    if proc.finish() != 0:
        sys.exit(f"the uninterrupted run failed:\n{proc.stderr()}")
    duration = time.perf_counter() - proc.started
    problems: list[str] = []
    reference = check_finished(work / "reference", args, problems)
    size_mb = (work / "reference" / "checkpoints" / LATEST).stat().st_size / 1e6
    print(f"uninterrupted run: {duration:.1f} s ({proc.start_line()[0]:.1f} s to the first step), {args.max_steps} steps, "
          f"checkpoint every {args.checkpoint_every} steps, {size_mb:.0f} MB each")

    drill = Drill(args, work, env, fresh_args, duration, reference)
    drill.problems += problems
    while drill.figures["kills"] < args.kills and drill.attempt():
        pass
    drill.complete()
    disk_ok = full_disk(work, env, args, drill.problems)

    for problem in drill.problems:
        print(f"PROBLEM: {problem}")
    figures = {
        **drill.figures,
        "corrupt_or_inconsistent": len(drill.problems),
        "full_disk_handled": disk_ok,
        "weights_equal_uninterrupted": f"{sum(drill.weights_match)}/{len(drill.weights_match)}",
        "checkpoint_mb": round(size_mb, 1),
        "uninterrupted_s": round(duration, 1),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    sys.exit(1 if drill.problems else 0)


if __name__ == "__main__":
    main()
