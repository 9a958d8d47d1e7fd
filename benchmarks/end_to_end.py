"""End-to-end time to result: one complete run per side with equal settings, what a user waits for.

* **ours**: the ``PETLightningCLI`` that ``python cli.py fit`` builds (in process, as the sweep runs it: a config
  file, ``run=False``), with a kept-best ``SelectionCheckpoint`` (weights only, top 1, ``val/headline``) and
  ``SelectionEarlyStopping``; ``fit``, then ``trainer.test(ckpt_path=<kept best>)`` on the reporting split;
* **Trainer**: Hugging Face ``Trainer`` (+ peft for LoRA; manual freezing for BitFit; the plain model for full
  fine-tuning) with ``eval_strategy=save_strategy="epoch"``, ``load_best_model_at_end=True``,
  ``metric_for_best_model`` the task's headline metric (computed with our metric code), ``save_total_limit=1``
  and ``EarlyStoppingCallback``; ``train()``, then ``evaluate()`` on the reporting split.

Both sides read the same examples: the ``dev_split`` protocol of :class:`~pet_lightning.data.TaskDataModule`
(one half of the official dev set selects, the other is reported), the same ``train_subset``, tokenized by the
same ``TaskDataModule.encode``; same epochs, batch size, learning rate, warm-up ratio, weight decay, patience,
precision and evaluation batch size. Neither side shows a progress bar; ours logs to a CSV file every 10 steps,
Trainer logs to its state every 10 steps. Trainer writes its default checkpoints (model, optimizer, scheduler,
RNG and trainer state) every epoch, which ``load_best_model_at_end`` needs; ours writes the kept checkpoint only
when the selection metric improves. Lightning runs its default sanity check (2 validation batches) before
training, Trainer none: it counts in our evaluation time.

Times (seconds): ``wall`` from the first line of the run (config, model, data) to the reported metrics;
``setup`` builds the model, reads and tokenizes the data (ours: the CLI's objects plus the datamodule's encoding,
done before ``fit`` so that both sides count tokenizing here); ``train`` is ``fit`` / ``train()`` less the two
next; ``eval`` the selection evaluations during training; ``ckpt`` writing checkpoints; ``final`` loading the
selected checkpoint and evaluating the reporting split. Checkpoint bytes are the bytes of every checkpoint
written. Early stopping may end the two sides at different epochs (their initial heads differ): the epochs column
shows it.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from benchmarks.common import TRAINER_MAX_GRAD_NORM, WARMUP_RATIO, WEIGHT_DECAY, HFCollator, Settings, progress
from benchmarks.intervals import RatioInterval, pair_ratios, ratio_interval
from benchmarks.runners import hf_model
from benchmarks.timing import file_bytes, sync

SIDES = ("ours", "trainer")
MONITOR = "val/headline"


@dataclass
class RunTimes:
    """One complete run of one side."""

    side: str
    task: str
    method: str
    repeat: int
    wall_s: float = 0.0
    setup_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    ckpt_s: float = 0.0
    final_s: float = 0.0
    ckpt_bytes: int = 0
    ckpt_files: int = 0
    epochs: int = 0
    steps: int = 0
    report_headline: float | None = None


class _Clock:
    """Evaluation and checkpoint-writing time inside a fit (checkpoint time never counts as evaluation)."""

    def __init__(self) -> None:
        self.eval_s = self.ckpt_s = 0.0
        self.bytes = self.files = 0
        self._eval_began: float | None = None
        self._ckpt_in_eval = 0.0

    def eval_start(self) -> None:
        self._eval_began, self._ckpt_in_eval = time.perf_counter(), 0.0

    def eval_end(self) -> None:
        if self._eval_began is not None:
            self.eval_s += time.perf_counter() - self._eval_began - self._ckpt_in_eval
            self._eval_began = None

    def saved(self, seconds: float, path: Path) -> None:
        self.ckpt_s += seconds
        self.bytes += file_bytes(path)
        self.files += 1
        if self._eval_began is not None:
            self._ckpt_in_eval += seconds


class _LightningClock(L.Callback):
    def __init__(self, clock: _Clock):
        self.clock = clock

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or getattr(trainer, "_bench_wrapped", False):
            return
        save, clock = trainer.save_checkpoint, self.clock

        def timed_save(filepath: Any, *args: Any, **kwargs: Any) -> None:
            began = time.perf_counter()
            save(filepath, *args, **kwargs)
            clock.saved(time.perf_counter() - began, Path(filepath))

        trainer.save_checkpoint = timed_save  # type: ignore[method-assign]
        trainer._bench_wrapped = True  # type: ignore[attr-defined]

    # Synchronised on CUDA: queued training work would otherwise be counted as evaluation time.
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(pl_module.device.type)
        self.clock.eval_start()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(pl_module.device.type)
        self.clock.eval_end()


def _learning_rate(settings: Settings, method: str) -> float:
    return settings.e2e_learning_rates.get(method, settings.learning_rate)


def ours_config(settings: Settings, task: str, method: str, seed: int, workdir: Path) -> dict[str, Any]:
    """The config ``python cli.py fit --config`` would read for this run."""
    select = {"monitor": MONITOR, "mode": "max"}
    return {
        "seed_everything": seed,
        "trainer": {
            "accelerator": settings.accelerator, "devices": 1, "precision": settings.e2e_precision,
            "max_epochs": settings.e2e_epochs, "log_every_n_steps": 10, "enable_progress_bar": False,
            "enable_model_summary": False, "default_root_dir": str(workdir),
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(workdir), "name": "csv"}},
            "callbacks": [
                {"class_path": "pet_lightning.callbacks.SelectionCheckpoint",
                 "init_args": {"dirpath": str(workdir / "checkpoints"), "filename": "best-{epoch}",
                               "save_top_k": 1, "save_weights_only": True, **select}},
                {"class_path": "pet_lightning.callbacks.SelectionEarlyStopping",
                 "init_args": {"patience": settings.e2e_patience, **select}},
            ],
        },
        "model": {"backbone": settings.backbone, "strategy": method, "learning_rate": _learning_rate(settings, method),
                  "init_seed": seed},
        "data": {"class_path": "pet_lightning.data.TaskDataModule",
                 "init_args": {"task": task, "max_length": settings.e2e_max_length, "batch_size": settings.batch_size,
                               "protocol": "dev_split", "train_subset": settings.e2e_train_subset,
                               "order_seed": seed}},
    }


def run_ours(settings: Settings, task: str, method: str, repeat: int, workdir: Path) -> RunTimes:
    from pet_lightning.callbacks import SelectionCheckpoint
    from pet_lightning.lightning_cli import cli_from_config

    times, clock = RunTimes("ours", task, method, repeat), _Clock()
    began = time.perf_counter()
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(ours_config(settings, task, method, repeat, workdir), sort_keys=False))
    cli = cli_from_config(config_path)
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    trainer.callbacks.append(_LightningClock(clock))
    datamodule.setup("fit")
    datamodule.datasets["train"], datamodule.datasets["val"], datamodule.datasets["test"]  # noqa: B018 (tokenize)
    fit_began = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    fit_s = time.perf_counter() - fit_began
    selection = next(cb for cb in trainer.callbacks if isinstance(cb, SelectionCheckpoint))
    times.epochs, times.steps = trainer.current_epoch, trainer.global_step
    final_began = time.perf_counter()
    tested = trainer.test(model, datamodule=datamodule, ckpt_path=selection.best_model_path, verbose=False)
    times.final_s = time.perf_counter() - final_began
    times.wall_s = time.perf_counter() - began
    times.report_headline = float(tested[0]["test/headline"])
    _fill(times, clock, fit_s)
    return times


def _fill(times: RunTimes, clock: _Clock, fit_s: float) -> None:
    times.eval_s, times.ckpt_s = clock.eval_s, clock.ckpt_s
    times.ckpt_bytes, times.ckpt_files = clock.bytes, clock.files
    times.train_s = fit_s - clock.eval_s - clock.ckpt_s
    times.setup_s = times.wall_s - fit_s - times.final_s


def _compute_metrics(task: str):
    import torch

    from pet_lightning.metrics import build_metrics
    from pet_lightning.tasks import get_task

    spec = get_task(task)

    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        metrics = build_metrics(spec)
        metrics.update(torch.as_tensor(logits).argmax(-1), torch.as_tensor(prediction.label_ids))
        values = {name: float(value) for name, value in metrics.compute().items()}
        return {**values, "headline": values[spec.headline]}

    return compute


def run_trainer(settings: Settings, task: str, method: str, repeat: int, workdir: Path) -> RunTimes:
    from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, TrainingArguments

    from pet_lightning.data import TaskDataModule

    times, clock = RunTimes("trainer", task, method, repeat), _Clock()
    loaded = {"s": 0.0}

    class TimedTrainer(Trainer):
        def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
            clock.eval_start()
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                clock.eval_end()

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            began = time.perf_counter()
            super()._save_checkpoint(model, trial)
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            clock.saved(time.perf_counter() - began, folder)

        def _load_best_model(self) -> None:
            began = time.perf_counter()
            super()._load_best_model()
            loaded["s"] += time.perf_counter() - began

    began = time.perf_counter()
    datamodule = TaskDataModule(
        task=task, backbone=settings.backbone, max_length=settings.e2e_max_length, batch_size=settings.batch_size,
        protocol="dev_split", train_subset=settings.e2e_train_subset, order_seed=repeat,
    )
    datamodule.setup("fit")
    train = datamodule.datasets["train"]
    select, report = (next(iter(datamodule.datasets[split].values())) for split in ("val", "test"))
    model = hf_model(settings.backbone, task, method)
    precision = settings.e2e_precision
    args = TrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=datamodule.eval_batch_size, num_train_epochs=settings.e2e_epochs,
        learning_rate=_learning_rate(settings, method), weight_decay=WEIGHT_DECAY, warmup_steps=WARMUP_RATIO,
        max_grad_norm=TRAINER_MAX_GRAD_NORM, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="headline",
        greater_is_better=True, save_total_limit=1, logging_strategy="steps", logging_steps=10, report_to="none",
        disable_tqdm=True, use_cpu=settings.accelerator == "cpu", bf16=precision.startswith("bf16"),
        fp16=precision.startswith("16"), dataloader_num_workers=0, remove_unused_columns=False,
        label_names=["labels"], seed=repeat,
    )
    trainer = TimedTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=select,
        data_collator=HFCollator(datamodule.collator), compute_metrics=_compute_metrics(task),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.e2e_patience)],
    )
    trainer.remove_callback(PrinterCallback)
    fit_began = time.perf_counter()
    trainer.train()
    fit_s = time.perf_counter() - fit_began - loaded["s"]
    times.steps = trainer.state.global_step
    times.epochs = round(trainer.state.epoch or 0)
    final_began = time.perf_counter()
    clock_eval = clock.eval_s
    metrics = trainer.evaluate(eval_dataset=report, metric_key_prefix="test")
    clock.eval_s = clock_eval  # the reporting evaluation is `final`, not selection
    times.final_s = time.perf_counter() - final_began + loaded["s"]
    times.wall_s = time.perf_counter() - began
    times.report_headline = float(metrics["test_headline"])
    _fill(times, clock, fit_s)
    return times


RUNNERS = {"ours": run_ours, "trainer": run_trainer}


@dataclass
class E2EResult:
    task: str
    method: str
    runs: dict[str, list[RunTimes]]
    ratio: RatioInterval
    # Early stopping ends the sides at epochs of their own (their initial heads and dropout streams differ), which
    # moves the time-to-result ratio without any difference in speed: the same ratio per epoch trained separates
    # the two.
    per_epoch: RatioInterval

    def ceiling(self) -> float:
        """The time-to-result ratio ours would reach training exactly as fast as Trainer with zero setup,
        evaluation, checkpoint and final time: Trainer's wall time over its training time, mean over repeats."""
        runs = self.runs["trainer"]
        return sum(run.wall_s / run.train_s for run in runs) / len(runs)

    def mean(self, side: str, name: str) -> float:
        values = [getattr(run, name) for run in self.runs[side]]
        return sum(values) / len(values)

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "method": self.method, "ratio": self.ratio.as_dict(),
                "per_epoch": self.per_epoch.as_dict(), "ceiling": self.ceiling(),
                "runs": {side: [asdict(r) for r in runs] for side, runs in self.runs.items()}}


def side_order(repeat: int) -> tuple[str, ...]:
    """Which side runs first in a repeat: ours first in even repeats, Trainer first in odd ones."""
    return SIDES if repeat % 2 == 0 else SIDES[::-1]


def run_end_to_end(settings: Settings) -> list[E2EResult]:
    """Every (task, method), ``e2e_repeats`` times, the two sides back to back in each repeat; the ratio (Trainer
    wall time over ours) per repeat and its interval."""
    runs: dict[tuple[str, str], dict[str, list[RunTimes]]] = {}
    for repeat in range(settings.e2e_repeats):
        for task in settings.e2e_tasks:
            for method in settings.e2e_methods:
                for side in side_order(repeat):
                    workdir = Path(tempfile.mkdtemp(prefix=f"pet-bench-e2e-{side}-"))
                    try:
                        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                            warnings.simplefilter("ignore")
                            result = RUNNERS[side](settings, task, method, repeat, workdir)
                    finally:
                        shutil.rmtree(workdir, ignore_errors=True)
                    runs.setdefault((task, method), {s: [] for s in SIDES})[side].append(result)
                    progress(f"e2e {task} {method} {side} repeat {repeat}: {result.wall_s:.1f} s")
    results = []
    for (task, method), by_side in runs.items():
        ours, theirs = by_side["ours"], by_side["trainer"]
        ratios = pair_ratios([run.wall_s for run in ours], [run.wall_s for run in theirs])
        per_epoch = pair_ratios([run.wall_s / max(run.epochs, 1) for run in ours],
                                [run.wall_s / max(run.epochs, 1) for run in theirs])
        results.append(E2EResult(task, method, by_side, ratio_interval(ratios), ratio_interval(per_epoch)))
    return results
