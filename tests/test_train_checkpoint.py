"""Checkpoints: all-or-nothing writes (even when the writer is killed), safe loading, top-k, RNG state."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from polx.errors import PolxError, UserInputError
from polx.base import checkpoint as ckpt
from polx.base.checkpoint import TopK, load_checkpoint, rng_state, save_checkpoint, set_rng_state


def _state(value: float, size: int = 4) -> dict:
    return {"global_step": int(value), "model": {"w": torch.full((size,), float(value))}}


def test_roundtrip_with_weights_only(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "latest.ckpt", _state(3))
    loaded = load_checkpoint(path)
    assert loaded["global_step"] == 3 and torch.equal(loaded["model"]["w"], torch.full((4,), 3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["latest.ckpt"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # permissions as open() would give, not 0600


def test_crash_between_write_and_rename_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "latest.ckpt", _state(1))

    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(PolxError, match="simulated crash before the rename.*the previous latest.ckpt is kept"):
        save_checkpoint(path, _state(2))
    monkeypatch.undo()
    assert load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.ckpt"]


def test_crash_mid_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "latest.ckpt", _state(1))
    real_save = torch.save

    def torn_save(obj, f):
        real_save(obj, f)
        f.seek(f.tell() // 2)
        f.truncate()  # half a file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _state(2))
    monkeypatch.undo()
    assert load_checkpoint(path)["global_step"] == 1


_WRITER = """
import sys, time, torch
from polx.base import checkpoint

real_save = torch.save

def slow_save(obj, f):  # the second save stalls half-written, like a slow disk, until killed
    real_save(obj, f)
    if obj["global_step"] == 2:
        f.seek(f.tell() // 2)
        f.truncate()
        f.flush()
        print("mid-write", flush=True)
        time.sleep(60)

checkpoint.torch.save = slow_save
for i in (1, 2):
    checkpoint.save_checkpoint(sys.argv[1], {"global_step": i, "model": {"w": torch.full((100_000,), float(i))}})
    print("saved", i, flush=True)
"""


def test_process_killed_while_saving_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    """A real writer process SIGKILLed in the middle of its second save."""
    path = tmp_path / "latest.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["saved", "1"]
        assert proc.stdout.readline().strip() == "mid-write"
        assert len(list(tmp_path.iterdir())) == 2  # latest.ckpt and the half-written temp file
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    state = load_checkpoint(path)
    assert state["global_step"] == 1 and torch.all(state["model"]["w"] == 1.0)
    ckpt.remove_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["latest.ckpt"]


_FULL_DISK = """
import resource, signal, sys, torch
from polx.errors import PolxError
from polx.base import checkpoint

path = sys.argv[1]
checkpoint.save_checkpoint(path, {"global_step": 1, "model": {"w": torch.ones(10)}})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
try:
    checkpoint.save_checkpoint(path, {"global_step": 2, "model": {"w": torch.ones(100_000)}})
except PolxError as exc:
    print(exc)
"""


def test_a_write_that_runs_out_of_space_is_a_message_and_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    """A real short write (the kernel refuses bytes past RLIMIT_FSIZE), not a mocked one."""
    path = tmp_path / "latest.ckpt"
    out = subprocess.run([sys.executable, "-c", _FULL_DISK, str(path)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert "could not write checkpoint" in out.stdout and "the previous latest.ckpt is kept" in out.stdout, out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.ckpt"]  # the partial temp file is gone


def test_a_malformed_checkpoint_is_named_before_use(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "x.ckpt", {"global_step": "3", "model": {"w": 1}, "config": {}})
    with pytest.raises(UserInputError) as info:
        ckpt.check_complete(load_checkpoint(path), path)
    message = str(info.value)
    assert "malformed polx checkpoint" in message and "global_step is a str, expected a int" in message
    assert "spec is missing" in message and "optimizer is missing" in message


def test_non_finite_weights_are_refused(tmp_path: Path) -> None:
    module = torch.nn.Linear(2, 2)
    weights = {k: v.clone() for k, v in module.state_dict().items()}
    weights["bias"][1] = float("inf")
    with pytest.raises(UserInputError, match="non-finite weights \\(bias\\)"):
        ckpt.load_weights(module, weights, tmp_path / "x.ckpt")


class Payload:  # a pickled object whose loading would run code
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "cannot be read"),
        (b"plain text, not a checkpoint", "not a torch file of tensors and plain data"),
        ("state_dict", "without format='polx-checkpoint'"),
        ("code", "never run code"),
        ("truncated", "cannot be read"),
    ],
)
def test_not_a_checkpoint_is_a_clear_user_error(tmp_path: Path, content, message: str, capsys) -> None:
    path = tmp_path / "x.ckpt"
    if content == "state_dict":
        torch.save({"w": torch.zeros(2)}, path)
    elif content == "code":
        torch.save({"format": "polx-checkpoint", "x": Payload()}, path)
    elif content == "truncated":
        save_checkpoint(path, _state(1, size=1000))
        path.write_bytes(path.read_bytes()[:-500])
    else:
        path.write_bytes(content)
    with pytest.raises(UserInputError, match=message):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out
    with pytest.raises(UserInputError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_topk_keeps_the_best_scores(tmp_path: Path) -> None:
    topk = TopK(tmp_path, k=2)
    offered = [(0.2, 1), (0.5, 2), (0.1, 3), (0.7, 4), (0.5, 5), (0.6, 6)]
    for score, step in offered:
        topk.offer(score, epoch=0, step=step, state=lambda s=step: _state(s))
    kept = topk.kept()
    assert [s for s, _ in kept] == [0.7, 0.6]
    assert [load_checkpoint(p)["global_step"] for _, p in kept] == [4, 6]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch=0000-step=0000004-test_mean_score=0.700.ckpt",
        "epoch=0000-step=0000006-test_mean_score=0.600.ckpt",
    ]
    assert TopK(tmp_path, k=0).offer(1.0, 0, 7, lambda: _state(7)) is None


def test_rng_state_survives_weights_only_and_restores_every_generator(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path / "c.ckpt", {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "c.ckpt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
