"""Measuring: step end times, samples/s, peak memory, file sizes.

Peak memory is the growth of the process RSS while a block runs (sampled every 2 ms; CPU) or the peak allocated
CUDA memory. A step is timed from the end of the step before it, so data loading and the loop's own work count.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory growth while the block runs: process RSS (CPU) or allocated CUDA memory."""

    def __init__(self, accelerator: str):
        self.cuda = accelerator == "cuda"
        self.peak = 0
        self.start = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())

    @property
    def mb(self) -> float:
        return (self.peak - self.start) / 2**20


def exact_rss_mode() -> bool:
    """Make freed memory go back to the OS so RSS growth measures live memory (glibc only).

    glibc keeps freed heap memory and raises its mmap threshold after large frees, so a run after another reuses
    memory without growing RSS. A fixed 64 KiB threshold maps every large tensor separately and unmaps it on free.
    It slows allocation, so it is switched on only after all timed runs, for the memory passes.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def samples_per_s(ends: list[float], sizes: list[int], warmup: int, per_epoch: int) -> list[float]:
    """Samples/s of each epoch from step end times: steps ``warmup..`` of every epoch, each timed from the end of
    the step before it."""
    rates = []
    for start in range(0, len(ends) - per_epoch + 1, per_epoch):
        timed = range(start + max(warmup, 1), start + per_epoch)
        seconds = sum(ends[i] - ends[i - 1] for i in timed)
        rates.append(sum(sizes[i] for i in timed) / seconds)
    return rates


def sync(accelerator: str) -> None:
    """Wait for queued device work, so a time read next covers it (no-op on CPU)."""
    if accelerator == "cuda":
        torch.cuda.synchronize()


class StepTimes(L.Callback):
    """End time and size of every training and validation batch.

    On CUDA every clock read waits for the device first: nothing else in a bf16 fit synchronises, so the host would
    read its time while steps are still queued and over-state the throughput.
    """

    def __init__(self, accelerator: str = "cpu") -> None:
        self.accelerator = accelerator
        self.train: list[float] = []
        self.train_sizes: list[int] = []
        self.eval: list[list[float]] = []
        self.eval_sizes: list[list[int]] = []
        self.epochs: list[tuple[float, float]] = []

    def _now(self) -> float:
        sync(self.accelerator)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append((self._now(), math.nan))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs[-1] = (self.epochs[-1][0], self._now())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.train.append(self._now())
        self.train_sizes.append(len(batch["input_ids"]))

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.eval.append([self._now()])
        self.eval_sizes.append([0])

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self.eval[-1].append(self._now())
        self.eval_sizes[-1].append(len(batch["input_ids"]))


def eval_rate(timer: StepTimes) -> float | None:
    """Median over validation runs of samples/s, the first batch of each run not timed."""
    rates = []
    for ends, sizes in zip(timer.eval, timer.eval_sizes):
        if len(ends) > 2:
            rates.append(sum(sizes[2:]) / (ends[-1] - ends[1]))
    return statistics.median(rates) if rates else None


def file_bytes(path: Path) -> int:
    """Size of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0
