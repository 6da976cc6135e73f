"""A linear layer split by output columns between the CPU and the GPU, run overlapped.

The first `cpu_columns` output columns are computed on the CPU from CPU-resident weights; the
rest are copied from pinned host memory to the GPU on a separate CUDA stream and computed
there; the outputs are concatenated. Only activations cross between the two. The GPU part is
launched first: CUDA copies and kernels are asynchronous, so the GPU works while the calling
thread computes the CPU part (no worker thread: a hand-off per layer would only add latency).
Without CUDA (or with a CPU device) the "GPU part" runs on the device given, its stream
replaced by a plain copy, so the arithmetic is the same and can be tested anywhere.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from blend.cost.offload.placement import cpu_columns

_lock = threading.Lock()
_copy_streams: dict[int, torch.cuda.Stream] = {}


def _copy_stream(device: torch.device) -> torch.cuda.Stream:
    """The stream weights are copied on, one per GPU, shared by all split layers so copies
    run in model order beside the compute stream."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _lock:
        if index not in _copy_streams:
            _copy_streams[index] = torch.cuda.Stream(device=index)
        return _copy_streams[index]


class SplitLinear(nn.Module):
    """y = x W^T + b with W's first `cpu_columns` rows on the CPU and the rest streamed.

    The weights are plain attributes, not parameters, so `model.to(device)` leaves them where
    they belong (CPU part in CPU memory, GPU part in pinned host memory). Inference only: the
    CPU part is computed from a detached input.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        alpha: float,
        device: torch.device | str,
        cpu_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D [out, in], got shape {tuple(weight.shape)}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha {alpha} is outside [0, 1]")
        self.device = torch.device(device)
        self.out_features, self.in_features = weight.shape
        self.cpu_columns = cpu_columns(self.out_features, alpha)
        self.cpu_dtype = cpu_dtype or weight.dtype
        self.streams = self.device.type == "cuda"
        host = weight.detach().to("cpu")
        split = self.cpu_columns
        # copies, not views: a view would keep the whole original weight alive
        self.cpu_weight = host[:split].to(self.cpu_dtype, copy=True)
        gpu_weight = host[split:]
        self.gpu_weight_host = gpu_weight.pin_memory() if self.streams else gpu_weight.clone()
        self.cpu_bias: torch.Tensor | None = None
        self.gpu_bias: torch.Tensor | None = None
        if bias is not None:
            b = bias.detach().to("cpu")
            self.cpu_bias = b[:split].to(self.cpu_dtype).contiguous()
            self.gpu_bias = b[split:].to(self.device)  # small: stays on the device

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        alpha: float,
        device: torch.device | str,
        cpu_dtype: torch.dtype | None = None,
    ) -> SplitLinear:
        return cls(linear.weight, linear.bias, alpha, device, cpu_dtype)

    @property
    def alpha(self) -> float:
        return self.cpu_columns / self.out_features

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"cpu_columns={self.cpu_columns}, device={self.device}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"input's last dimension is {x.shape[-1]}, expected {self.in_features}"
            )
        # first: bringing x to the CPU waits for the GPU's queue, which must not hold our part
        x_cpu = x.detach().to("cpu", self.cpu_dtype) if self.cpu_columns else None
        y_gpu = None
        if self.cpu_columns < self.out_features:  # queued; runs while the CPU computes
            y_gpu = F.linear(x, self._streamed_weight(), self.gpu_bias)
        if x_cpu is None:
            assert y_gpu is not None
            return y_gpu
        y_cpu = F.linear(x_cpu, self.cpu_weight, self.cpu_bias).to(self.device, x.dtype)
        return y_cpu if y_gpu is None else torch.cat([y_cpu, y_gpu], dim=-1)

    def _streamed_weight(self) -> torch.Tensor:
        """The GPU part's weights on the device for this call (freed after it)."""
        if not self.streams:
            return self.gpu_weight_host.to(self.device, copy=True)
        stream = _copy_stream(self.device)
        with torch.cuda.stream(stream):
            weight = self.gpu_weight_host.to(self.device, non_blocking=True)
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(stream)
        weight.record_stream(current)  # the allocator must not reuse it before the GEMM ends
        return weight
