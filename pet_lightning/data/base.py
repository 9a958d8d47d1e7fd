"""The DataModule shared by GLUE and SuperGLUE: load, split, process.

* **load**: the task's source (:mod:`pet_lightning.data.source`) reads rows from a local data root in the
  official layout (``<root>/glue/RTE/train.tsv``, ``<root>/superglue/CB/train.jsonl``), from the Hugging Face hub
  when no root is given, or from a task file's own files; the task's formulation turns rows into examples.
* **split**: the evaluation protocol decides which examples train, which select models (``val``) and which are
  reported (``test``): :func:`~pet_lightning.data.protocol.make_plan`, a pure function of the examples and the
  :class:`~pet_lightning.data.protocol.SplitSettings`.
* **process**: examples are tokenized once (no padding); batches are padded to their longest member.

The data-order seed alone decides the shuffling of training batches; the evaluation order is fixed, and under
DDP evaluation shards are not padded with repeated samples (padding biases MCC and F1).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from pet_lightning.backbones import DEFAULT_BACKBONE, load_tokenizer
from pet_lightning.data.encoding import (
    EncodedDataset,
    EncodeOnFirstUse,
    PaddingCollator,
    loader_options,
    private_generator,
)
from pet_lightning.data.formulations import Example
from pet_lightning.data.protocol import SplitPlan, SplitSettings, make_plan
from pet_lightning.data.readers import DataError, default_data_dir
from pet_lightning.data.sampling import (
    LengthGroupedSampler,
    LengthSortedSampler,
    ResumableDistributedSampler,
    resume_sampler,
    train_position,
)
from pet_lightning.data.source import ExampleSource, task_source
from pet_lightning.data.task_files import check_protocol
from pet_lightning.paths import from_start
from pet_lightning.tasks import TaskSpec, get_task

MIN_MAX_LENGTH = 8
_BENCHMARK_NAMES = {"glue": "GLUE", "superglue": "SuperGLUE"}


class TaskDataModule(L.LightningDataModule):
    """Any GLUE or SuperGLUE task as a LightningDataModule: the task table decides which benchmark it is.

    Args:
        task: Task name from :data:`pet_lightning.tasks.TASKS` (``rte``, ``cb``...) or a task file (docs/task_files.md)
            ``rte`` is GLUE's tsv RTE, ``superglue-rte`` SuperGLUE's jsonl RTE (one set of examples, two layouts).
        data_dir: Data root holding ``glue/`` and ``superglue/`` in the official layouts. Defaults to the
            ``PET_DATA_DIR`` environment variable; when neither is set, the task loads from the hub.
        backbone: Model whose tokenizer encodes the text (linked to ``model.backbone`` by the CLI).
        max_length: Longest tokenized input; longer ones are truncated.
        batch_size: Training batch size (per device).
        eval_batch_size: Evaluation batch size; defaults to twice ``batch_size``.
        num_workers: DataLoader worker processes.
        order_seed: Seed of the training-data order and of dropout (``PETModule`` re-seeds torch's RNG with it at
            fit start; see :mod:`pet_lightning.seeds`). None takes the global seed set by ``seed_everything``.
        protocol: ``standard`` (select and report on dev: leaky), ``dev_split`` or ``train_holdout``.
        swap: With ``dev_split``, swap the halves used for selection and for reporting.
        split_seed: Seed of the protocol's split (fixed across runs so every run sees the same split).
        train_subset: Train on this many examples only (a fixed subset drawn with ``subset_seed``).
        subset_seed: Seed of the training subset.
        group_by_length: Batch training examples of similar length together (less padding, faster).
        sort_eval_by_length: Evaluate validation and test examples longest first (less padding, faster; metrics
            do not depend on the order). Prediction keeps the file order.
        watch_report: Also evaluate the reported examples every validation epoch, logged with the suffix
            ``_report`` (``val/loss_report``) and never monitored by selection: what selecting on them would have
            reported (the Revisiting study's leaky "2-2" setting, read from the history afterwards).
        pad_to_multiple_of: Pad batches to a multiple of this length (8 suits fp16/bf16 tensor cores on GPUs).
    """

    benchmark: str | None = None
    """None: any task, and the task table decides GLUE or SuperGLUE. ``GlueDataModule`` / ``SuperGlueDataModule``
    set it to accept only their benchmark's tasks."""

    def __init__(
        self,
        task: str = "rte",
        data_dir: str | None = None,
        backbone: str = DEFAULT_BACKBONE,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        order_seed: int | None = None,
        protocol: str = "standard",
        swap: bool = False,
        split_seed: int = 42,
        train_subset: int | None = None,
        subset_seed: int = 0,
        group_by_length: bool = False,
        sort_eval_by_length: bool = True,
        watch_report: bool = False,
        pad_to_multiple_of: int | None = None,
    ):
        super().__init__()
        self.spec: TaskSpec = get_task(task)
        if self.benchmark and self.spec.benchmark != self.benchmark and self.spec.benchmark in _BENCHMARK_NAMES:
            right_module = "SuperGlueDataModule" if self.spec.benchmark == "superglue" else "GlueDataModule"
            raise DataError(
                f"task {task!r} is a {_BENCHMARK_NAMES[self.spec.benchmark]} task, not "
                f"{_BENCHMARK_NAMES[self.benchmark]}: use {right_module} for it, or "
                "pet_lightning.data.TaskDataModule, which takes every task"
            )
        if self.spec.train_subset is not None and train_subset is not None:
            base = self.spec.name.split("@")[0]
            raise DataError(f"task {self.spec.name} is {base} with {self.spec.train_subset} training examples, and "
                            f"train_subset={train_subset} would subsample them again: drop train_subset, or name the "
                            f"task {base}@{train_subset}")
        if max_length < MIN_MAX_LENGTH:
            raise ValueError(f"max_length={max_length} is too short: use at least {MIN_MAX_LENGTH} tokens")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: use a positive batch size")
        SplitSettings(protocol, swap, split_seed, train_subset, subset_seed)  # refuses an unknown protocol here
        check_protocol(self.spec, protocol)
        self.task = self.spec.name  # canonical (RTE -> rte), as the model's linked task; hparams: a task file's path
        task = self.spec.reference
        self.save_hyperparameters()
        self.data_dir = from_start(data_dir) if data_dir is not None else default_data_dir()
        self.backbone = backbone
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.num_workers = num_workers
        self.order_seed = order_seed
        self.protocol = protocol
        self.swap = swap
        self.split_seed = split_seed
        self.train_subset = train_subset
        self.subset_seed = subset_seed
        self.group_by_length = group_by_length
        self.sort_eval_by_length = sort_eval_by_length
        if watch_report and protocol == "standard":
            raise ValueError("watch_report=True under protocol standard: selection already sees the reported "
                             "examples; use dev_split or train_holdout")
        self.watch_report = watch_report
        self.plan: SplitPlan | None = None
        self.datasets: dict[str, EncodedDataset | dict[str, EncodedDataset]] = {}
        self._tokenizer = None
        self._train_sampler: DistributedSampler | None = None  # the fit's sampler, whose position checkpoints save
        self._resume_position: dict[str, int] | None = None  # restored from a mid-epoch checkpoint

    # ----------------------------------------------------------------------------------------------- load
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.backbone)
        return self._tokenizer

    @property
    def source(self) -> ExampleSource:
        """Where the task's examples are read from (:func:`~pet_lightning.data.source.task_source`)."""
        return task_source(self.spec, self.data_dir)

    def available_splits(self) -> list[str]:
        """Splits of the task that exist in the chosen source (a task file reads its own files)."""
        return self.source.available_splits()

    def load_examples(self, split: str) -> list[Example]:
        """Read one official split and formulate its rows as examples."""
        return self.source.load_examples(split)

    # ---------------------------------------------------------------------------------------------- split
    @property
    def split_settings(self) -> SplitSettings:
        """The protocol and its seeds, as this module's arguments of the same names set them."""
        return SplitSettings(protocol=self.protocol, swap=self.swap, split_seed=self.split_seed,
                             train_subset=self.train_subset, subset_seed=self.subset_seed)

    @property
    def evaluation_only(self) -> bool:
        """A task without a training split in the task table (the AX-b / AX-g diagnostics)."""
        return "train" not in self.spec.files

    def plan_splits(self) -> SplitPlan:
        return make_plan(self.source, self.split_settings)

    # -------------------------------------------------------------------------------------------- process
    def encode(self, examples: list[Example]) -> EncodedDataset:
        """Tokenize examples once, without padding; multiple-choice examples keep one row per choice."""
        features = []
        for example in examples:
            encoded = self.tokenizer(
                example["text"], example.get("text_pair"), truncation=True, max_length=self.max_length
            )
            feature = {key: encoded[key] for key in PaddingCollator.token_keys if key in encoded}
            # ``meta`` (official ids, entity strings) stays with the split plan for prediction files; batches hold
            # only tensors.
            extras = {k: v for k, v in example.items() if k not in ("text", "text_pair", "meta") and v is not None}
            if example.get("label") is None:
                extras.pop("label", None)
            feature.update(extras)
            features.append(feature)
        return EncodedDataset(features)

    def prepare_data(self) -> None:
        # Fail early, in the main process, with a clear message if files or the tokenizer are missing.
        self.tokenizer  # noqa: B018

    def setup(self, stage: str | None = None) -> None:
        if self.plan is not None:
            return
        self.plan = plan = self.plan_splits()
        # Tokenizing is the slow part (MultiRC: 42k answers), so each split is encoded when first used.
        self.datasets = EncodeOnFirstUse(
            {
                "train": lambda: self.encode(plan.train),
                "val": lambda: {name: self.encode(rows) for name, rows in plan.selection.items()},
                "test": lambda: {name: self.encode(rows) for name, rows in plan.report.items()},
                "predict": lambda: self.encode(plan.predict),
            }
        )

    # ----------------------------------------------------------------------------------------- loaders
    @property
    def collator(self) -> PaddingCollator:
        return PaddingCollator(self.tokenizer.pad_token_id or 0, self.hparams.get("pad_to_multiple_of"))

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """One batch of encoded examples, padded as every loader of this module pads them."""
        return self.collator(features)

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def resolved_order_seed(self) -> int:
        return self.order_seed if self.order_seed is not None else torch.initial_seed() % 2**31

    def train_dataloader(self) -> DataLoader:
        if self.evaluation_only:
            raise DataError(
                f"task {self.task} is an evaluation-only diagnostic: train on rte, then run validate / test / "
                f"predict with data.task={self.task} and that checkpoint"
            )
        dataset = self.datasets["train"]
        if len(dataset) == 0:
            raise DataError(f"task {self.task}: the training split is empty under protocol {self.protocol!r}")
        world_size, rank = self._world()
        sampler = self.train_sampler(dataset, world_size, rank)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=self.collator,
            num_workers=self.num_workers,
            **loader_options(self.trainer, self.num_workers),
            generator=private_generator(self.resolved_order_seed()),
        )

    def train_sampler(self, dataset: EncodedDataset, world_size: int, rank: int) -> DistributedSampler:
        # A DistributedSampler (even with one replica) carries the data-order seed and its epoch, and Lightning
        # leaves samplers of this type in place instead of replacing them with its own.
        if self.group_by_length:
            sampler = LengthGroupedSampler(
                dataset.lengths(), self.batch_size, num_replicas=world_size, rank=rank, seed=self.resolved_order_seed()
            )
        else:
            sampler = ResumableDistributedSampler(
                dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=self.resolved_order_seed()
            )
        # A fit resumed from a mid-epoch checkpoint continues with the next batch of the same order.
        self.train_sampler_resume(sampler)
        self._train_sampler = sampler
        return sampler

    def _position_settings(self, examples: int, world_size: int) -> dict[str, int]:
        return {"batch_size": self.batch_size, "world_size": world_size, "order_seed": self.resolved_order_seed(),
                "examples": examples}

    def state_dict(self) -> dict[str, Any]:
        """The training order's position (saved in every checkpoint Lightning writes during a fit)."""
        sampler = self._train_sampler
        if sampler is None or self.trainer is None or self.trainer.state.fn != "fit":
            return {}
        settings = self._position_settings(len(self.datasets["train"]), self._world()[0])
        return {"train_position": train_position(self.trainer, sampler, settings)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_position = state_dict.get("train_position")
        sampler = self._train_sampler
        if sampler is not None and self.trainer is not None and self.trainer.state.fn == "fit":
            # The loader was built before the checkpoint was restored (estimated_stepping_batches, two-stage setup).
            self.train_sampler_resume(sampler)

    def train_sampler_resume(self, sampler) -> None:
        """Apply the restored mid-epoch position to ``sampler`` when the fit resumes from a checkpoint (the sampler
        skips only in the position's epoch, so a loader rebuilt for a later epoch is unaffected)."""
        pending = self._resume_position
        if pending is not None and self.trainer is not None and self.trainer.ckpt_path is not None:
            settings = self._position_settings(len(self.datasets["train"]), self._world()[0])
            resume_sampler(sampler, pending, settings, self.trainer.ckpt_path)

    def _eval_loaders(self, datasets: dict[str, EncodedDataset], sort: bool = False) -> list[DataLoader]:
        world_size, rank = self._world()
        loaders = []
        for dataset in datasets.values():
            if sort:
                sampler = LengthSortedSampler(dataset.lengths(), num_replicas=world_size, rank=rank)
            elif world_size > 1:
                sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
            else:
                sampler = SequentialSampler(dataset)
            loaders.append(
                DataLoader(
                    dataset,
                    batch_size=self.eval_batch_size,
                    sampler=sampler,
                    collate_fn=self.collator,
                    num_workers=self.num_workers,
                    **loader_options(self.trainer, self.num_workers),
                    generator=private_generator(0),
                )
            )
        return loaders

    def eval_dataloader(self, split: str = "train") -> DataLoader:
        """One split's examples in order, batched for evaluation (``train`` too: for reading features after a fit,
        never for training; the first loader of ``val`` / ``test``)."""
        datasets = self.datasets[split]
        return self._eval_loaders(datasets if isinstance(datasets, dict) else {split: datasets})[0]

    def val_dataloader(self) -> list[DataLoader]:
        datasets = dict(self.datasets["val"])
        if self.watch_report:  # after the selection loaders: selection reads the first one only
            datasets.update({f"{name} (report)": ds for name, ds in self.datasets["test"].items()})
        return self._eval_loaders(datasets, sort=self.sort_eval_by_length)

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.datasets["test"], sort=self.sort_eval_by_length)

    def predict_dataloader(self) -> list[DataLoader]:
        if len(self.datasets["predict"]) == 0:
            raise DataError(f"task {self.task} has no test split to predict on in {self.data_dir or 'the hub'}")
        return self._eval_loaders({"predict": self.datasets["predict"]})

    def eval_suffixes(self, stage: str) -> list[str]:
        """Metric-name suffix of each evaluation dataloader (MNLI: ``""`` matched, ``_mismatched``)."""
        assert self.plan is not None, "call setup() first"
        names = self.plan.selection if stage == "val" else self.plan.report
        suffixes = [self.spec.eval_splits.get(name, "" if i == 0 else f"_{name}") for i, name in enumerate(names)]
        if stage == "val" and self.watch_report:
            suffixes += [f"{suffix}_report" for suffix in self.eval_suffixes("test")]
        return suffixes

    @property
    def num_training_examples(self) -> int:
        return len(self.datasets["train"]) if self.plan is not None else 0
