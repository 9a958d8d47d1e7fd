"""What a fit sets up for its device when it starts: the bf16 check, TF32 on CUDA and the optional compile.

* **bf16 where it is slow.** ``bf16-mixed`` (the quickstart's and most configs' precision) runs natively on CPUs
  with bf16 instructions and on GPUs of compute capability 8.0 and later (Ampere, Hopper). Elsewhere it runs
  emulated, several times slower, and nothing fails: the fit warns once, naming the fix (``32-true`` on such a CPU,
  ``16-mixed`` on a V100 or T4). Lightning does not check this on GPUs.
* **TF32** (``tf32=True``, the default): on CUDA, float32 matrix products (``32-true`` runs, and the passes that run
  outside autocast: the Child-Tuning Fisher pass, the exact probe's features) use TF32 tensor cores on Ampere and
  later (``torch.set_float32_matmul_precision("high")``, about 10 bits of mantissa in the products). CPU runs are
  unchanged.
* **compile** (``compile=True``): ``torch.compile`` of the model (``dynamic=True``: batches are padded to their
  longest example, so shapes change). For GPUs, where small encoders are launch-bound; measured on this project's
  2-core CPU it gave no gain, and it does not combine with the feature cache (its stubbed encoder forward).
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from pet_lightning.precision import emulated_bf16_message

# Compute capability from which GPUs run bf16 (and TF32) on tensor cores.
NATIVE_BF16_CAPABILITY = 8


def gpu_bf16_message(precision: str, device: torch.device) -> str | None:
    """The one-line warning for a bf16 run on a GPU without native bf16 (V100, T4), else None."""
    if device.type != "cuda" or "bf16" not in str(precision) or not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    if major >= NATIVE_BF16_CAPABILITY and torch.cuda.is_bf16_supported(including_emulation=False):
        return None
    return (f"precision {precision} on {torch.cuda.get_device_name(device)} (compute capability {major}.{minor}), "
            "which has no native bf16: it runs emulated, several times slower; set trainer.precision to 16-mixed "
            "(e.g. --trainer.precision 16-mixed, or precision: 16-mixed in a sweep file)")


def prepare_device(module: L.LightningModule, tf32: bool = True, compile: bool = False) -> None:
    """At fit start: warn about emulated bf16, switch TF32 on (CUDA) and compile the model if asked."""
    precision, device = str(module.trainer.precision), module.device
    slow_bf16 = emulated_bf16_message(precision, device.type) or gpu_bf16_message(precision, device)
    if slow_bf16:
        rank_zero_warn(slow_bf16)
    if tf32 and device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    if compile and not getattr(module.model, "_compiled_call_impl", None):
        module.model.compile(dynamic=True)  # in place: parameter names (and checkpoints) stay as they are


__all__ = ["NATIVE_BF16_CAPABILITY", "gpu_bf16_message", "prepare_device"]
