"""Which hardware spec this machine is, and whether a prediction priced for another one says
so: a makespan for an h100-80g read on a machine without a GPU is not this machine's."""

from __future__ import annotations

from dataclasses import dataclass

from blend.cost.model import local_hardware_name
from blend.cost.parallel import one_gpu_name

CPU_SPEC = "cpu-local"


@dataclass(frozen=True, slots=True)
class ThisMachine:
    """spec: the hardware spec name that fits this machine (None: a GPU without one);
    description: what was found, in words ("no GPU", "NVIDIA H100 80GB HBM3")."""

    spec: str | None
    description: str


def this_machine() -> ThisMachine:
    """This machine's accelerator, as local_hardware_name finds it (imports torch: seconds)."""
    import torch

    if not torch.cuda.is_available():
        return ThisMachine(CPU_SPEC, "no GPU")
    gpu = torch.cuda.get_device_name(0)
    try:
        return ThisMachine(local_hardware_name(), gpu)
    except ValueError:  # a GPU without a spec
        return ThisMachine(None, gpu)


@dataclass(frozen=True, slots=True)
class HardwareCheck:
    """The hardware spec a prediction is priced for against this machine."""

    used: str  # the spec's name (a tensor-parallel engine's "h100-80g x2" included)
    machine: ThisMachine

    @property
    def matches(self) -> bool:
        return one_gpu_name(self.used) == self.machine.spec

    def note(self) -> str | None:
        """None when the spec is this machine's; else one sentence saying that the numbers
        are for other hardware."""
        if self.matches:
            return None
        here = self.machine.description
        spec = self.machine.spec
        fits = "no hardware spec fits it" if spec is None else f"it would be priced as {spec}"
        has = "has no GPU" if here == "no GPU" else f"has {here}"
        return (
            f"priced for {self.used}, but this machine {has} ({fits}): the numbers are for "
            f"{self.used} engines, not for running here"
        )


def check_hardware(used: str, machine: ThisMachine | None = None) -> HardwareCheck:
    """`used` (a hardware spec's name) against this machine (found when not given)."""
    return HardwareCheck(used, machine if machine is not None else this_machine())
