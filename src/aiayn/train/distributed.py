"""Training on several processes started by torchrun: DDP or FSDP, and the collectives that
keep every rank in step. One process is a group of one, and then nothing here communicates."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.nn.parallel import DistributedDataParallel

from aiayn.run.weights import check_tensors, load_checked, unique_state


class Single:
    """One process: the model trains as it is."""

    rank, world = 0, 1

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @property
    def main(self) -> bool:
        """Only the main process writes files and logs."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to call in training steps (it may be `model` itself, changed in place)."""
        return model

    def sync_gradients(self, forward: nn.Module, sync: bool) -> AbstractContextManager:
        """Around one forward and backward: reduce gradients across ranks only when `sync`."""
        return nullcontext()

    def sum(self, values: list[float]) -> list[float]:
        return values

    def agree(self, flag: bool, seconds: float) -> tuple[bool, float]:
        """(flag on any rank, the largest of `seconds`): the ranks stop at the same step."""
        return flag, seconds

    def gather(self, t: Tensor) -> list[Tensor]:
        return [t]

    def model_state(self, model: nn.Module) -> dict[str, Tensor]:
        """The whole model's tensors on the main process (shared ones once), for saving."""
        return unique_state(model)

    def load_model_state(self, model: nn.Module, state: dict[str, Tensor], path: Any) -> None:
        load_checked(model, state, path)

    def optimizer_state(self, model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
        return opt.state_dict()

    def load_optimizer_state(
        self, model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]
    ) -> None:
        opt.load_state_dict(state)


class DataParallel(Single):
    """Every rank holds the whole model; DDP averages gradients in buckets during backward."""

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sync_gradients(self, forward: nn.Module, sync: bool) -> AbstractContextManager:
        return nullcontext() if sync else forward.no_sync()

    def _reduce(self, values: list[float], op: dist.ReduceOp) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=op)
        return t.tolist()

    def sum(self, values: list[float]) -> list[float]:
        return self._reduce(values, dist.ReduceOp.SUM)

    def agree(self, flag: bool, seconds: float) -> tuple[bool, float]:
        flag_any, most = self._reduce([float(flag), seconds], dist.ReduceOp.MAX)
        return bool(flag_any), most

    def gather(self, t: Tensor) -> list[Tensor]:
        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather_object(out, t)
        return out


class ShardedDataParallel(DataParallel):
    """FSDP: each rank keeps a shard of every layer's parameters, gradients and optimizer
    state; checkpoints are gathered whole onto the main process, so they load anywhere."""

    def __init__(self, device: torch.device, bf16: bool = False) -> None:
        super().__init__(device)
        self.names: list[str] = []
        self.bf16 = bf16

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        self.names = list(unique_state(model))  # tied tensors: the name kept on saving
        # bf16: each layer's parameters gathered in bf16 (half the traffic and memory), the
        # gradients reduced in fp32 (sums of many small bf16 values lose their low bits);
        # the sharded master weights and the optimizer stay fp32
        policy = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            if self.bf16
            else MixedPrecisionPolicy()
        )
        for layer in model.modules():
            if isinstance(layer, nn.ModuleList):
                for block in layer:
                    fully_shard(block, mp_policy=policy)
        return fully_shard(model, mp_policy=policy)

    def sync_gradients(self, forward: nn.Module, sync: bool) -> AbstractContextManager:
        forward.set_requires_gradient_sync(sync)
        return nullcontext()

    def _options(self) -> StateDictOptions:
        return StateDictOptions(full_state_dict=True, cpu_offload=True)

    def model_state(self, model: nn.Module) -> dict[str, Tensor]:
        state = get_model_state_dict(model, options=self._options())
        return {name: state[name].contiguous() for name in self.names} if self.main else {}

    def load_model_state(self, model: nn.Module, state: dict[str, Tensor], path: Any) -> None:
        # Sharded tensors report the whole tensor's shape. Tied tensors are saved under one
        # name, so torch's own check (strict) would miss the other: the check is ours.
        shapes = {n: t.shape for n, t in model.state_dict().items() if n in self.names}
        check_tensors(state, shapes, path)
        opts = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, state, options=opts)

    def optimizer_state(self, model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
        return get_optimizer_state_dict(model, opt, options=self._options())

    def load_optimizer_state(
        self, model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]
    ) -> None:
        opts = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(model, opt, state, options=opts)


def join(device: torch.device, shard: bool, bf16: bool = False) -> Single:
    """The process group torchrun started this process in (a group of one without torchrun),
    training on `device`: gloo on CPUs, NCCL and one GPU per rank on GPUs; `bf16`: sharded
    (FSDP) training's mixed-precision policy."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Single(device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ShardedDataParallel(device, bf16) if shard else DataParallel(device)


def leave() -> None:
    """Close the process group `join` opened, if any."""
    if dist.is_initialized():
        dist.barrier()  # the main rank may still be writing; no rank leaves before it is done
        dist.destroy_process_group()
