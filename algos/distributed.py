"""Multi-process training under `torchrun`: DDP or FSDP, gloo on CPU and NCCL on GPUs.

    torchrun --nproc_per_node 2 -m algos.cli train distributed.mode=ddp ...

How the work is split (the trainer does this through the helpers below):

* Rollout: every rank plays a contiguous slice of the iteration's task seeds (`shard_range`), whole
  task groups only, with the global group ids; the trajectories are then all-gathered in rank order,
  which is task order, so every rank holds the batch a single process would hold and computes the
  same advantages on complete groups. No group statistic is ever taken on a rank's partial batch.
  What travels is what the estimator and the row layout need (ids, rewards, anchors): chats,
  frames and pixel inputs stay on the rank that played them (algos/collection.py).
* Update: all ranks shuffle the same rows with the same seed into the same minibatches; each rank
  trains the rows of every minibatch that it played (`Row.local`), so each image is processed once,
  by the rollout that saw it. Micro-batch losses are weighted by their share of
  the *global* minibatch (tokens for token-mean, rows for the seq-* modes) times the world size,
  because DDP and FSDP average gradients over ranks: the summed gradient then equals the
  single-process gradient whatever the world size. Ranks run the same number of micro-batches
  (a rank short of rows runs zero-weight ones on a row of its own), since FSDP's forward and
  backward, and DDP's synchronising backward, are collectives every rank has to join. The critic
  is a plain replica per rank; `sum_gradients` keeps the replicas equal.
* FSDP keeps two copies of the policy: the sharded training copy and the plain module the rollout
  generates with (ranks generate different numbers of tokens, which sharded forwards cannot do);
  `sync_replica` gathers the trained weights into the plain copy after every update.
* Only rank 0 writes metrics, checkpoints, plots and the final model.

Without torchrun (no WORLD_SIZE in the environment) nothing here initialises torch.distributed and
every helper is a no-op on a world of one.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    mode: str = "off"  # "off" (one process), "ddp" or "fsdp"
    device: str = "cpu"

    @property
    def active(self) -> bool:
        return self.world > 1


_CTX = DistContext()


def context() -> DistContext:
    """The current process's place in the run (a world of one outside torchrun)."""
    return _CTX


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(mode: str = "auto", backend: str = "auto", timeout_minutes: float = 30.0) -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    mode: auto (ddp under torchrun, off otherwise), ddp, fsdp or off. `off` under torchrun with
    more than one process is refused: each rank would train alone and overwrite the others' files.
    """
    global _CTX
    if mode not in ("auto", "ddp", "fsdp", "off"):
        raise ValueError(f"distributed.mode must be auto, ddp, fsdp or off; got {mode!r}")
    if not launched_by_torchrun():
        if mode in ("ddp", "fsdp"):
            print(f"distributed.mode={mode} but not launched by torchrun: training in one process")
        _CTX = DistContext()
        return _CTX
    if mode == "off":
        raise ValueError("distributed.mode=off but torchrun started several processes; use ddp or fsdp")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    device = "cpu"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    _CTX = DistContext(rank, world, local_rank, "ddp" if mode == "auto" else mode, device)
    return _CTX


def set_context(ctx: DistContext) -> None:
    """Install a context for a process group the caller initialised (tests, benchmarks)."""
    global _CTX
    _CTX = ctx


def teardown() -> None:
    global _CTX
    if dist.is_initialized():
        dist.destroy_process_group()
    _CTX = DistContext()


def is_main() -> bool:
    return _CTX.rank == 0


def barrier() -> None:
    if _CTX.active:
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (`[obj]` in one process). Objects travel pickled."""
    if not _CTX.active:
        return [obj]
    out: list[Any] = [None] * _CTX.world
    dist.all_gather_object(out, obj)
    return out


def gather_objects_to_main(obj: Any) -> list[Any] | None:
    """Every rank's `obj` in rank order on rank 0, None on the others (`[obj]` in one process)."""
    if not _CTX.active:
        return [obj]
    out: list[Any] | None = [None] * _CTX.world if _CTX.rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def sum_gradients(module: nn.Module) -> None:
    """Sum the gradients of a replica trained without DDP over the ranks (a missing one counts as
    zero), so every rank steps with the same gradient and the replicas stay equal."""
    if not _CTX.active:
        return
    for p in module.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not _CTX.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_dicts(d: dict[str, float]) -> dict[str, float]:
    """Key-wise sum of every rank's dict (keys missing on a rank count as 0)."""
    out: dict[str, float] = {}
    for part in all_gather_objects(d):
        for k, v in part.items():
            out[k] = out.get(k, 0.0) + v
    return out


def shard_range(n: int, rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """[lo, hi) of the `rank`-th of `world` contiguous, near-equal slices of n items."""
    rank = _CTX.rank if rank is None else rank
    world = _CTX.world if world is None else world
    return rank * n // world, (rank + 1) * n // world


def broadcast_module(model: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (random LoRA init, a model built per rank)."""
    if not _CTX.active:
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


class _DDP(nn.parallel.DistributedDataParallel):
    """DDP that still answers the wrapped model's attributes (config, get_base_model, ...), which the
    log-prob code reads; forward goes through DDP so gradients are averaged."""

    def get_base_model(self) -> nn.Module:
        """The plain transformers model inside (through a peft wrapper too): agents.hf reads its
        config and forward signature from here; forward calls still go through DDP."""
        inner = self.module
        get = getattr(inner, "get_base_model", None)
        return get() if callable(get) else inner

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap_model(model: nn.Module, find_unused: bool = False) -> nn.Module:
    """The training module for the current mode: `model` itself (one process), a DDP wrapper around
    it (same parameters), or an FSDP2-sharded deep copy (see `sync_replica`)."""
    ctx = _CTX
    if not ctx.active:
        return model
    if ctx.mode == "ddp":
        ids = [ctx.local_rank] if ctx.device.startswith("cuda") else None
        import inspect

        # No buffer sync on forward: buffers here are constants (rotary tables), and a per-forward
        # broadcast would be a collective that ranks with different forward counts cannot match.
        newer = "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
        sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
        return _DDP(model, device_ids=ids, find_unused_parameters=find_unused, **sync)
    if ctx.mode == "fsdp":
        import copy

        from torch.distributed.fsdp import fully_shard

        sharded = copy.deepcopy(model)
        # One FSDP unit per transformer block (gathered just before it runs), then the root for the
        # embeddings and the head.
        for module in sharded.modules():
            if type(module).__name__.endswith("DecoderLayer"):
                fully_shard(module)
        fully_shard(sharded)
        return sharded
    raise ValueError(f"unknown distributed mode {ctx.mode!r}")


def full_state_dict(train_model: nn.Module) -> dict[str, torch.Tensor]:
    """The training module's full (unsharded) state dict on every rank; a collective under FSDP."""
    if _CTX.mode == "fsdp" and _CTX.active:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(train_model, options=StateDictOptions(full_state_dict=True))
    return train_model.state_dict()


def sync_replica(train_model: nn.Module, replica: nn.Module) -> None:
    """FSDP: gather the trained weights into the plain module the rollout generates with.
    (DDP and one process train the replica itself, so there is nothing to do.)"""
    if train_model is replica or isinstance(train_model, nn.parallel.DistributedDataParallel):
        return
    full = full_state_dict(train_model)
    with torch.no_grad():
        for name, p in replica.named_parameters():
            if p.requires_grad:  # frozen weights never change
                p.copy_(full[name].to(p.device))


def load_replica_into(train_model: nn.Module, replica: nn.Module) -> None:
    """FSDP: push the plain module's weights (e.g. just restored from a checkpoint) into the shards."""
    if train_model is replica or isinstance(train_model, nn.parallel.DistributedDataParallel):
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(train_model, replica.state_dict(), options=StateDictOptions(full_state_dict=True))


def optimizer_state(train_model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's full state (FSDP: gathered from the shards, a collective on every rank)."""
    if _CTX.mode == "fsdp" and _CTX.active:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(train_model, optimizer, options=StateDictOptions(full_state_dict=True))
    return optimizer.state_dict()


def load_optimizer_state(train_model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    if _CTX.mode == "fsdp" and _CTX.active:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(train_model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        return
    optimizer.load_state_dict(state)
