"""Data-parallel training over several processes: torch.distributed, launched by torchrun.

    torchrun --nproc_per_node=4 -m chargen train data/tinyshakespeare.txt

torchrun starts one process (a "rank") per GPU or CPU worker and tells each
its RANK, LOCAL_RANK and WORLD_SIZE in environment variables. Every rank loads
the same corpus and builds the same seeded model. The global batch of
--batch-size streams is cut into WORLD_SIZE equal, contiguous shares of rows:

    streams (B = 8, W = 2):   rows 0..3 -> rank 0     rows 4..7 -> rank 1

Each rank trains on its share and DistributedDataParallel averages the
gradients. The loss is a mean over equal-size shares, so the averaged gradient
is exactly the gradient of the whole batch in one process: W ranks take the
same steps as one process would, up to float rounding.

The carried hidden state and the random-number state belong to each rank; at
checkpoint moments they are gathered into one full-batch state, so rank 0 alone
writes a checkpoint that a run with any world size (dividing the batch) resumes.

A World of size 1 (no torchrun) turns every method here into a no-op, so the
training loop reads the same in one process or in many.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as dist

from chargen.errors import ChargenError
from chargen.model import CharRNN, Hidden, map_hidden


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0  # 0 .. size - 1; rank 0 writes checkpoints, metrics and progress
    size: int = 1  # number of processes (torchrun's WORLD_SIZE)
    local_rank: int = 0  # index among the processes of this machine: picks the GPU
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- splitting the batch ---------------------------------------------------------

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ChargenError unless `batch_size` streams split evenly over the ranks."""
        if batch_size % self.size:
            raise ChargenError(
                f"a batch of {batch_size} streams cannot be split evenly over {self.size} processes; "
                "the batch size (--batch-size; a resumed run keeps its own) must be a multiple of the number of processes"
            )

    def rows(self, batch_size: int) -> slice:
        """This rank's contiguous share of `batch_size` rows; shares differ by at most one row."""
        return slice(self.rank * batch_size // self.size, (self.rank + 1) * batch_size // self.size)

    def local_hidden(self, hidden: Hidden) -> Hidden:
        """This rank's rows of a full-batch hidden state (num_layers, B, H)."""
        if self.size == 1:
            return hidden
        return map_hidden(lambda h: h[:, self.rows(h.shape[1])].contiguous(), hidden)

    # -- talking to the other ranks ---------------------------------------------------

    def wrap(self, model: CharRNN) -> torch.nn.Module:
        """The module to train through: DistributedDataParallel averages gradients in backward()."""
        if self.size == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def gather_floats(self, *values: float) -> torch.Tensor:
        """Every rank's `values` as a (W, len(values)) float64 tensor, identical on all ranks.

        Callers reduce it themselves (mean of losses, max of clocks, any of stop
        flags); all ranks then compute the same numbers and take the same decisions.
        """
        mine = torch.tensor(values, dtype=torch.float64)  # (k,)
        if self.size == 1:
            return mine.unsqueeze(0)
        return self._all_gather(mine).cpu()

    def gather_hidden(self, hidden: Hidden) -> Hidden:
        """The full-batch hidden state (num_layers, B, H) from every rank's rows, in rank order."""
        if self.size == 1:
            return hidden
        return map_hidden(lambda h: torch.cat(self._all_gather(h.contiguous()).unbind(0), dim=1), hidden)

    def gather_rng(self, rng: torch.Tensor) -> torch.Tensor:
        """Every rank's CPU generator state, stacked (W, N); a single process keeps its 1-D state."""
        if self.size == 1:
            return rng
        return self._all_gather(rng).cpu()

    def local_rng(self, rng: torch.Tensor, seed: int) -> torch.Tensor:
        """This rank's generator state from a checkpoint's: its row of a (W, N) stack.

        A checkpoint written by fewer processes has no row for this rank: it then
        starts a stream of its own from seed + rank (the run goes on, but not bit for bit).
        """
        stack = rng if rng.dim() == 2 else rng.unsqueeze(0)
        if self.rank < len(stack):
            return stack[self.rank].clone()  # set_rng_state misreads a view into a larger tensor
        return torch.Generator().manual_seed(seed + self.rank).get_state()

    def broadcast_text(self, text: str) -> str:
        """Rank 0's `text`, on every rank (the others' `text` is ignored).

        Sent as UTF-8 bytes in a tensor: broadcast_object_list would need NumPy.
        """
        if self.size == 1:
            return text
        data = torch.tensor(list(text.encode("utf-8")) if self.is_main else [], dtype=torch.uint8)
        length = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        dist.broadcast(length, src=0)
        if not self.is_main:
            data = torch.empty(int(length), dtype=torch.uint8)
        data = data.to(self.device)
        dist.broadcast(data, src=0)
        return bytes(data.cpu().tolist()).decode("utf-8")

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.size > 1:
            self._all_gather(torch.zeros(1))  # a tiny collective; works the same on gloo and nccl

    def stop(self) -> None:
        """Leave the process group (call once, at the end of the command)."""
        if dist.is_available() and dist.is_initialized():  # also a torchrun group of one
            dist.destroy_process_group()

    def _all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """(W, *tensor.shape): the same-shaped tensor of every rank, stacked in rank order.

        nccl moves only GPU tensors, so inputs go to this rank's device first.
        """
        tensor = tensor.to(self.device)
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor)
        return torch.stack(parts)


def scaling(tokens_per_s: float, size: int, single_process_rate: Optional[float]) -> tuple[float, Optional[float]]:
    """(tokens/s per process, scaling efficiency) of a run of `size` processes.

    Efficiency is the run's throughput over `size` times the rate one process
    reaches alone on the same machine (given by the user: chargen cannot measure
    it inside a multi-process run without stopping the others): 1.0 means every
    process adds a whole process's worth; None when no single-process rate is known.
    """
    per_process = tokens_per_s / size
    if not single_process_rate:
        return per_process, None
    return per_process, tokens_per_s / (size * single_process_rate)


def launched() -> bool:
    """True when this process was started by torchrun (or another launcher setting WORLD_SIZE)."""
    if "TORCHELASTIC_RUN_ID" in os.environ:  # what dist.is_torchelastic_launched() checks
        return True
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: torch.device) -> World:
    """Join torchrun's process group, or describe a lone process when not launched by torchrun.

    The backend follows the device: nccl for CUDA GPUs, gloo for CPUs. With
    GPUs, each rank uses the one at its LOCAL_RANK. MASTER_ADDR, MASTER_PORT,
    RANK and WORLD_SIZE come from the environment torchrun sets.
    """
    if not launched():
        return World(device=device)
    if not dist.is_available():
        raise ChargenError("this PyTorch build has no torch.distributed; it cannot train in several processes")
    missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ChargenError(f"a distributed launch needs {', '.join(missing)} in the environment; start with torchrun")
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ChargenError(
                f"process {rank} wants GPU {local_rank}, but this machine has {torch.cuda.device_count()}; "
                "start at most one process per GPU (--nproc_per_node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        # device_id (torch >= 2.3) binds an nccl group to this rank's GPU; a CPU run passes nothing.
        options = {"device_id": device} if device.type == "cuda" else {}
        store = _restart_store(size)
        if store is not None:
            options |= {"store": store, "rank": rank, "world_size": size}
        dist.init_process_group(backend, **options)
    return World(rank=rank, size=size, local_rank=local_rank, device=device)


def _restart_store(size: int) -> Optional["dist.Store"]:
    """After torchrun restarted the workers (--max-restarts), the key-value store for this attempt.

    With c10d rendezvous, torchrun's agent keeps one TCP store for all attempts
    (TORCHELASTIC_USE_AGENT_STORE), and the process group's keys written by the
    previous attempt are still there: the new ranks then read the dead ranks'
    addresses and fail to connect (pytorch/pytorch#135712; seen with torch 2.13 and
    gloo). Prefixing the keys with the attempt number keeps the attempts apart.
    None (use init_process_group's own env:// store) on the first attempt and
    when each attempt has a store of its own.
    """
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if attempt == 0 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), size, is_master=False,
                          timeout=timedelta(minutes=30))
    return dist.PrefixStore(f"chargen/attempt-{attempt}", store)

