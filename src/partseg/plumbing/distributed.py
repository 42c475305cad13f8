"""Data-parallel training across processes with torch.distributed (DDP under torchrun).

A stage started with `--processes N` (N > 1) re-launches itself under torchrun
(`python -m torch.distributed.run --standalone --nproc_per_node N -m stages.<name> ...`); a
stage started by torchrun yourself (several nodes: `torchrun --nnodes ... -m stages.<name>`)
finds WORLD_SIZE / RANK / LOCAL_RANK in the environment and joins. Backends: NCCL on CUDA
(one GPU per process, cuda:LOCAL_RANK), gloo on CPU.

What keeps a run's meaning whatever the process count:
- The global batch is the params' batch_size; each rank takes a contiguous slice of it
  (`Ranks.part`). The random draws (batch indices, augmentation) are made for the whole
  batch on every rank, each keeping its rows, so rank r sees exactly the rows a 1-process
  run gives them.
- The loss is normalised by the global number of valid pixels and DDP averages the
  gradients, so the gradient is the 1-process gradient; clipping, Adam and the learning
  rate schedule see the same numbers.
- BatchNorm uses the statistics of the global batch (`convert_batchnorm`): torch's
  SyncBatchNorm runs on GPUs only, and per-rank statistics would change the model with N.
- Snapshots are written by rank 0 and read by every rank; only rank 0 writes outputs, logs
  and the progress bar.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from partseg.plumbing.errors import PartsegError

LAUNCHED_ENV = "PARTSEG_DISTRIBUTED_CHILD"


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def part(self, global_size: int) -> slice:
        """Rows of a global batch of `global_size` that this rank computes (contiguous)."""
        start = self.rank * global_size // self.world
        stop = (self.rank + 1) * global_size // self.world
        return slice(start, stop)


def current() -> Ranks:
    """The ranks of an initialised process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Ranks()


def started_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_from_environment(device_name: str | None = None) -> Ranks:
    """Join the process group torchrun described in the environment (no-op without it).

    On CUDA each process takes the GPU of its local rank and NCCL; on CPU gloo.
    """
    if not started_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Ranks()
    if dist.is_initialized():
        return current()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    wants_cuda = (device_name or os.environ.get("PARTSEG_DEVICE", "auto")).startswith(
        ("auto", "cuda")) and torch.cuda.is_available()
    if wants_cuda:
        torch.cuda.set_device(local_rank)
        os.environ["PARTSEG_DEVICE"] = f"cuda:{local_rank}"
    dist.init_process_group("nccl" if wants_cuda else "gloo")
    return current()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def relaunch_under_torchrun(processes: int, module: str, argv: list[str]) -> int | None:
    """Run `python -m module argv` as `processes` torchrun workers on this machine.

    Returns the exit code, or None when this process should train itself (one process, or it
    is already a torchrun worker).
    """
    if processes < 1:
        raise PartsegError(f"--processes must be at least 1, got {processes}")
    if processes == 1 or started_by_torchrun() or os.environ.get(LAUNCHED_ENV):
        return None
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "-m", module, *argv]
    print(f"[{module}] launching {processes} processes: {' '.join(command[1:])}",
          file=sys.stderr, flush=True)
    return subprocess.call(command, env={**os.environ, LAUNCHED_ENV: "1"})


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over ranks (the tensor itself with one process). No host sync."""
    if not current().active:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor


def average_gradients(parameters) -> None:
    """Replace each gradient by its mean over ranks: one all-reduce of one flat buffer.

    For the GAN, whose steps take several forward passes per backward and R1's gradient of a
    gradient (create_graph), which DDP's reducer does not support; like NVlabs' StyleGAN3,
    the gradients are averaged by hand after the backward pass instead.
    """
    if not current().active:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= current().world
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def barrier() -> None:
    if current().active:
        dist.barrier()


# ----------------------------------------------------------------------------- BatchNorm

class GlobalBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch across ranks.

    The per-channel sums of x and x^2 are summed over ranks with the autograd-aware
    all_reduce, so the backward pass sends each rank its share of the global gradient. With
    one process it is plain BatchNorm2d; its state dict is BatchNorm2d's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and current().active):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        x32 = x.float()
        local = torch.cat([x32.sum(dim=(0, 2, 3)), (x32 * x32).sum(dim=(0, 2, 3)),
                           x32.new_tensor([x.shape[0] * x.shape[2] * x.shape[3]])])
        total = all_reduce(local)
        channels = x.shape[1]
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels:2 * channels] / count - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            unbiased = var * count / (count - 1).clamp_min(1.0)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
            self.num_batches_tracked += 1
        shape = (1, channels, 1, 1)
        out = (x32 - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


def convert_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Swap every BatchNorm2d of `module` for GlobalBatchNorm2d in place (same state)."""
    for name, child in module.named_children():
        if type(child) is torch.nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum,
                                            child.affine, child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.to(device=child.weight.device if child.affine else None)
            setattr(module, name, replacement)
        else:
            convert_batchnorm(child)
    return module


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP around `model` when several processes train, else the model itself."""
    if not current().active:
        return model
    ids = [device.index] if device.type == "cuda" else None
    # Buffers (BatchNorm's running stats) are computed from global statistics on every rank,
    # so they agree without DDP re-broadcasting them each step.
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                     broadcast_buffers=False)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model

