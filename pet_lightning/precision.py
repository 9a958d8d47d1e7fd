"""Whether this machine runs bf16 natively: a measured check, and the warning a fit gives when it does not.

Why: ``bf16-mixed`` (the quickstart's precision and most study configs') is fast on CPUs with bf16 instructions
(AVX512-BF16, AMX, Arm's BF16) and very slow on the rest, where oneDNN emulates bf16 arithmetic: nothing fails, but
a fit runs an order of magnitude slower than in ``32-true`` (measured in ``docs/performance.md``, "bf16 on a CPU
without bf16 instructions"). CPU flags and torch's private capability queries name instruction sets, not what
oneDNN makes of them in a given build, so this module times the operation itself: a linear layer's forward and
backward under CPU autocast against the same in float32.
"""

from __future__ import annotations

import functools
import time

import torch

# bf16 slower than float32 by more than this factor (per linear layer, forward and backward) reads as emulated.
# Native bf16 is at or below 1x, emulated bf16 an order of magnitude above; 2x leaves room for timing noise.
EMULATED_SLOWDOWN = 2.0


def _linear_seconds(bf16: bool, rows: int, width: int, repeats: int) -> float:
    """Fastest of ``repeats`` forward + backward passes of one ``width`` x ``4 width`` linear layer on CPU.

    Inputs come from a generator of its own: the check never draws from the global RNG a fit is seeded with.
    """
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4 * width, width, generator=generator, requires_grad=True)
    x = torch.randn(rows, width, generator=generator, requires_grad=True)
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = torch.nn.functional.linear(x, weight)
        out.float().sum().backward()
        times.append(time.perf_counter() - started)
    return min(times[1:])  # the first pass pays for oneDNN's kernel selection


@functools.lru_cache(maxsize=1)
def cpu_bf16_slowdown(rows: int = 256, width: int = 256, repeats: int = 5) -> float:
    """Time of a linear layer's forward and backward under CPU bf16 autocast over the same in float32 (measured once
    per process; it takes longer where bf16 is emulated).

    Below 1: bf16 is faster (native); above :data:`EMULATED_SLOWDOWN`: emulated. The fastest of several passes each,
    so that a busy machine (other fits on its cores) does not read native bf16 as emulated.
    """
    return _linear_seconds(True, rows, width, repeats) / _linear_seconds(False, rows, width, repeats)


def cpu_bf16_emulated() -> bool:
    """Whether this CPU emulates bf16: :func:`cpu_bf16_slowdown` above :data:`EMULATED_SLOWDOWN`."""
    return cpu_bf16_slowdown() > EMULATED_SLOWDOWN


def emulated_bf16_message(precision: str, device_type: str) -> str | None:
    """The one-line warning for a run in ``precision`` on ``device_type`` where bf16 is emulated, else None.

    Only CPU runs in a bf16 precision are checked here; GPUs by their compute capability
    (:func:`pet_lightning.device.gpu_bf16_message`: Lightning does not check them either).
    """
    if device_type != "cpu" or "bf16" not in str(precision):
        return None
    if not cpu_bf16_emulated():
        return None
    slowdown = cpu_bf16_slowdown()
    return (f"precision {precision} on a CPU that emulates bf16: a bf16 linear layer measured {slowdown:.1f}x slower "
            "than float32 here (a full fine-tuning step of MiniLM measured 15x slower on such a CPU); set "
            "trainer.precision to 32-true on this machine (e.g. --trainer.precision 32-true)")
