"""Two gloo CPU processes: gradients averaged by hand keep parameters identical across ranks, equal
to one process training on the union of their batches; the trainer runs under torchrun's variables."""

from __future__ import annotations

import os
import socket
import sys
from importlib import metadata
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn

import toy_plugin  # noqa: E402

from polx.plugins import load_plugins  # noqa: E402
from polx.runs import prepare_training  # noqa: E402
from polx.train import distributed  # noqa: E402
from polx.base.checkpoint import LATEST, load_checkpoint  # noqa: E402
from polx.train.trainer import Trainer  # noqa: E402

WORLD = 2
STEPS = 4
RUNS = {  # the toy, and the imf objective whose torch.func.jvp rules out the DDP wrapper (when installed)
    "toy_mlp": ["train.max_steps=5"],
    "imf_attnres": ["train.max_steps=2", "train.val_every=0", "eval.at_end=false", "head.n_emb=32", "head.n_layer=1", "head.n_head=2"],
}


def _tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    model.unused = nn.Parameter(torch.ones(2))  # no gradient anywhere: must stay untouched, as in one process
    return model


def _union_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(2 * 5, 3, generator=g), torch.randn(2 * 5, 2, generator=g)) for _ in range(STEPS)]


def _train(model: nn.Module, batches, info: distributed.DistInfo) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    for x, y in batches:
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(model.parameters(), info, bucket_bytes=64)  # several small buckets
        opt.step()


def _worker(rank: int, port: int, out: str, cache: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info, device = distributed.init_from_env("cpu")
    try:
        model = _tiny_model(seed=100 + rank)  # different on each rank until the broadcast
        distributed.broadcast_module(model, info)
        shards = [(x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]) for x, y in _union_batches()]
        _train(model, shards, info)
        torch.save(model.state_dict(), Path(out) / f"tiny_{rank}.pt")

        plugins = load_plugins(entry_points=list(metadata.entry_points(group="polx")), extra=[("toy", toy_plugin)])
        for head, extra in RUNS.items():
            if head not in plugins.registry.names("head"):
                continue
            plan = prepare_training(
                plugins, head=head, env="toy_reach", loggers=["none", "toy_record"], out=Path(out) / head,
                overrides=toy_plugin.toy_overrides(cache, "eval.rollout_every=0", "eval.n_test=2", *extra),
                argv=["torchrun", "-m", "polx", "train"],
            )
            trainer = Trainer(plan, info, device)
            trainer.fit()
            torch.save(trainer.model.state_dict(), Path(out) / f"{head}_{rank}.pt")
    finally:
        distributed.shutdown(info)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_stay_identical_and_match_one_process_on_the_union(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    toy_plugin.ToyReachAdapter(toy_plugin.ToyReachConfig(cache_dir=str(cache))).default_dataset()
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), str(cache)), nprocs=WORLD, join=True)

    tiny = [torch.load(tmp_path / f"tiny_{r}.pt", weights_only=True) for r in range(WORLD)]
    reference = _tiny_model(seed=100)  # rank 0's initial weights
    _train(reference, _union_batches(), distributed.DistInfo())
    for name, value in reference.state_dict().items():
        assert torch.equal(tiny[0][name], tiny[1][name]), name
        torch.testing.assert_close(tiny[0][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert torch.equal(tiny[0]["unused"], torch.ones(2))

    # the trainer: identical policies on both ranks, one run directory written by rank 0 alone
    for head in RUNS:
        if not (tmp_path / f"{head}_0.pt").exists():
            assert head != "toy_mlp"
            continue  # that plugin is not installed
        policies = [torch.load(tmp_path / f"{head}_{r}.pt", weights_only=True) for r in range(WORLD)]
        for name in policies[0]:
            assert torch.equal(policies[0][name], policies[1][name]), f"{head}: {name}"
        (run,) = (tmp_path / head).glob("*/*")
        state = load_checkpoint(run / "checkpoints" / LATEST)
        for name, value in state["model"].items():
            assert torch.equal(value, policies[0][name]), name
    (run,) = (tmp_path / "toy_mlp").glob("*/*")
    assert load_checkpoint(run / "checkpoints" / LATEST)["global_step"] == 5
    records = toy_plugin.read_records(run)
    assert [r["step"] for r in records if "train_loss" in r["metrics"]] == [2, 4, 5]
    assert any("test_mean_score" in r["metrics"] for r in records)
