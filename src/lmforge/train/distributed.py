"""Scale-out on torch.distributed: the same `lmforge train` under torchrun.

Without WORLD_SIZE in the environment everything here is a no-op for a single
process. Under torchrun: gloo on CPU, NCCL on GPU; DDP by default, FSDP2
(`fully_shard` on every block and the root) with `train.distributed = "fsdp"`.
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = f"cuda:{local_rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local_rank)
    if world <= 1:
        return DistInfo(device=device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo",
                                timeout=datetime.timedelta(minutes=10))
    return DistInfo(rank=dist.get_rank(), world=world, local_rank=local_rank, device=device)


def teardown(info: DistInfo) -> None:
    """Destroy the process group, after the caller has dropped its DDP model. A DDP reducer
    that outlives the group's registration destroys the group itself, holding the GIL while
    gloo's threads may still need it to free a tensor: a hang at exit (pytorch issue 56297).
    Dropped first, the reducer only lets go, and the group goes through Python's binding."""
    if info.enabled and dist.is_initialized():
        gc.collect()            # a reference cycle may still hold the DDP model
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, info: DistInfo, strategy: str) -> torch.nn.Module:
    """Return the module to call in the training step (the original stays for saving)."""
    if not info.enabled:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        from lmforge.models.registry import family_of
        for unit in family_of(model).fsdp_units(model):
            fully_shard(unit)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    return DDP(model, device_ids=[info.local_rank] if info.device.startswith("cuda") else None)


def full_state_dict(model: torch.nn.Module, info: DistInfo, strategy: str) -> dict[str, torch.Tensor]:
    """The unsharded weights (every rank must call this under FSDP)."""
    if info.enabled and strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def optimizer_states(model: torch.nn.Module, optimizers: list, info: DistInfo, strategy: str) -> tuple[str, list]:
    """(format, states) to checkpoint (every rank must call this under FSDP).

    FSDP's own optimizer state is sharded across ranks; it is gathered and keyed by
    parameter name ("fqn") so the checkpoint resumes at any world size, FSDP or not."""
    if info.enabled and strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return "fqn", [get_optimizer_state_dict(model, o, options=opts) for o in optimizers]
    return "native", [o.state_dict() for o in optimizers]


def load_optimizer_states(model: torch.nn.Module, optimizers: list, fmt: str, states: list) -> None:
    if fmt == "fqn":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
        for opt, sd in zip(optimizers, states):
            set_optimizer_state_dict(model, opt, sd, options=StateDictOptions(full_state_dict=True))
        return
    for opt, sd in zip(optimizers, states):
        opt.load_state_dict(sd)


def mean_across_ranks(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world


def max_across_ranks(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def merge_across_ranks(state: dict, info: DistInfo) -> dict:
    """Every rank's dict of {name: {key: tensor}} merged into one (each rank holds its own keys),
    so rank 0 can checkpoint state that lives on all of them (a recurrent model's carried state)."""
    if not info.enabled:
        return state
    gathered: list = [None] * info.world
    dist.all_gather_object(gathered, state)
    merged: dict = {}
    for part in gathered:
        for name, table in part.items():
            merged.setdefault(name, {}).update(table)
    return merged


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
