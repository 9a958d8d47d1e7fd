"""The DataModule shared by GLUE and SuperGLUE: load, split, process.

* **load**: rows come from a local data root in the official layout (``<root>/glue/RTE/train.tsv``,
  ``<root>/superglue/CB/train.jsonl``) or, when no root is given, from the Hugging Face hub; the task's
  formulation turns rows into examples.
* **split**: the evaluation protocol decides which examples train, which select models (``val``) and which are
  reported (``test``); see :mod:`pet_lightning.data.protocol`.
* **process**: examples are tokenized once (no padding); batches are padded to their longest member.

The data-order seed alone decides the shuffling of training batches; the evaluation order is fixed, and under
DDP evaluation shards are not padded with repeated samples (padding biases MCC and F1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

from pet_lightning.backbones import DEFAULT_BACKBONE, load_tokenizer
from pet_lightning.data.formulations import Example, formulate
from pet_lightning.data.readers import DataError, default_data_dir, read_hub, read_jsonl, read_tsv, task_file
from pet_lightning.tasks import TaskSpec, get_task

MIN_MAX_LENGTH = 8


@dataclass
class SplitPlan:
    """Which examples train, which select models and which are reported.

    ``selection`` feeds the validation loop (early stopping, the kept checkpoint); ``report`` feeds the test
    loop (the figure a paper would print). ``leaky`` marks plans where both are the same examples.
    """

    train: list[Example]
    selection: dict[str, list[Example]]
    report: dict[str, list[Example]]
    predict: list[Example] = field(default_factory=list)
    leaky: bool = False
    description: str = ""


class EncodedDataset(Dataset):
    """Tokenized examples: a list of feature dicts, padded later by :class:`PaddingCollator`."""

    def __init__(self, features: list[dict[str, Any]]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]

    def lengths(self) -> list[int]:
        return [_token_count(feature["input_ids"]) for feature in self.features]


def _token_count(input_ids: list) -> int:
    return max(len(ids) for ids in input_ids) if input_ids and isinstance(input_ids[0], list) else len(input_ids)


class PaddingCollator:
    """Pads a batch to its longest sequence; multiple-choice features become ``[batch, choices, length]``."""

    token_keys = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(_token_count(feature["input_ids"]) for feature in features)
        batch: dict[str, torch.Tensor] = {}
        for key in self.token_keys:
            if key not in features[0]:
                continue
            pad = self.pad_token_id if key == "input_ids" else 0
            batch[key] = torch.tensor([self._pad(feature[key], longest, pad) for feature in features])
        for key, value in features[0].items():
            if key in self.token_keys:
                continue
            dtype = torch.float32 if isinstance(value, float) else torch.long
            batch[key] = torch.tensor([feature[key] for feature in features], dtype=dtype)
        return batch

    @staticmethod
    def _pad(ids: list, length: int, pad: int) -> list:
        if ids and isinstance(ids[0], list):
            return [row + [pad] * (length - len(row)) for row in ids]
        return ids + [pad] * (length - len(ids))


class TaskDataModule(L.LightningDataModule):
    """A GLUE or SuperGLUE task as a LightningDataModule.

    Args:
        task: Task name from :data:`pet_lightning.tasks.TASKS` (``rte``, ``mrpc``, ``cb``...).
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
    """

    benchmark: str | None = None

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
    ):
        super().__init__()
        self.spec: TaskSpec = get_task(task)
        if self.benchmark and self.spec.benchmark != self.benchmark:
            raise ValueError(
                f"task {task!r} is a {self.spec.benchmark.upper()} task: use "
                f"{'SuperGlueDataModule' if self.spec.benchmark == 'superglue' else 'GlueDataModule'} for it"
            )
        if max_length < MIN_MAX_LENGTH:
            raise ValueError(f"max_length={max_length} is too short: use at least {MIN_MAX_LENGTH} tokens")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: use a positive batch size")
        from pet_lightning.data.protocol import PROTOCOLS

        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        self.save_hyperparameters()
        self.task = self.spec.name
        self.data_dir = data_dir if data_dir is not None else default_data_dir()
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
        self.plan: SplitPlan | None = None
        self.datasets: dict[str, EncodedDataset | dict[str, EncodedDataset]] = {}
        self._tokenizer = None

    # ----------------------------------------------------------------------------------------------- load
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.backbone)
        return self._tokenizer

    def available_splits(self) -> list[str]:
        """Splits of the task that exist in the chosen source."""
        if self.data_dir is None:
            return list(self.spec.files)
        return [
            split
            for split, name in self.spec.files.items()
            if (_task_folder(self.data_dir, self.spec) / name).is_file()
        ]

    def load_examples(self, split: str) -> list[Example]:
        """Read one official split and formulate its rows as examples."""
        if self.data_dir is None:
            rows = read_hub(self.spec, split)
            if self.spec.hub_columns:
                rows = [{ours: row.get(theirs) for ours, theirs in self.spec.hub_columns.items()} for row in rows]
            source = f"{self.spec.hub_path}/{self.spec.hub_config}:{split}"
        else:
            path = task_file(self.data_dir, self.spec, split)
            if path.suffix == ".jsonl":
                rows = read_jsonl(path)
            else:
                headerless = self.spec.headerless if not split.startswith("test") else None
                rows = read_tsv(path, self.spec.columns, headerless)
            source = str(path)
        if not rows:
            raise DataError(f"{source} has no rows: replace it with the official file")
        return formulate(self.spec, rows, source)

    # ---------------------------------------------------------------------------------------------- split
    def plan_splits(self) -> SplitPlan:
        from pet_lightning.data.protocol import make_plan

        return make_plan(self)

    # -------------------------------------------------------------------------------------------- process
    def encode(self, examples: list[Example]) -> EncodedDataset:
        """Tokenize examples once, without padding; multiple-choice examples keep one row per choice."""
        features = []
        for example in examples:
            encoded = self.tokenizer(
                example["text"], example.get("text_pair"), truncation=True, max_length=self.max_length
            )
            feature = {key: encoded[key] for key in PaddingCollator.token_keys if key in encoded}
            extras = {k: v for k, v in example.items() if k not in ("text", "text_pair") and v is not None}
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
        self.datasets = _EncodeOnFirstUse(
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
        return PaddingCollator(self.tokenizer.pad_token_id or 0)

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def resolved_order_seed(self) -> int:
        return self.order_seed if self.order_seed is not None else torch.initial_seed() % 2**31

    def train_dataloader(self) -> DataLoader:
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
            persistent_workers=self.num_workers > 0,
            generator=_private_generator(self.resolved_order_seed()),
        )

    def train_sampler(self, dataset: EncodedDataset, world_size: int, rank: int) -> DistributedSampler:
        # A DistributedSampler (even with one replica) carries the data-order seed and its epoch, and Lightning
        # leaves samplers of this type in place instead of replacing them with its own.
        from pet_lightning.data.sampling import LengthGroupedSampler

        if self.group_by_length:
            return LengthGroupedSampler(
                dataset.lengths(), self.batch_size, num_replicas=world_size, rank=rank, seed=self.resolved_order_seed()
            )
        return DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=self.resolved_order_seed()
        )

    def _eval_loaders(self, datasets: dict[str, EncodedDataset], sort: bool = False) -> list[DataLoader]:
        from pet_lightning.data.sampling import LengthSortedSampler

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
                    generator=_private_generator(0),
                )
            )
        return loaders

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.datasets["val"], sort=self.sort_eval_by_length)

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
        return [self.spec.eval_splits.get(name, "" if i == 0 else f"_{name}") for i, name in enumerate(names)]

    @property
    def num_training_examples(self) -> int:
        return len(self.datasets["train"]) if self.plan is not None else 0


def _private_generator(seed: int) -> torch.Generator:
    """A generator of the loader's own: every DataLoader iterator draws a base seed from its generator, and
    drawing it from torch's global one would shift the dropout stream with each evaluation or sanity check (a
    resumed run would then not replay an uninterrupted one)."""
    return torch.Generator().manual_seed(seed)


class _EncodeOnFirstUse(dict):
    """A dict of encoded splits that builds each entry the first time it is read."""

    def __init__(self, builders: dict[str, Callable[[], Any]]):
        super().__init__()
        self._builders = builders

    def __missing__(self, key: str) -> Any:
        value = self[key] = self._builders[key]()
        return value


def _task_folder(data_dir: str, spec: TaskSpec):
    from pathlib import Path

    return Path(data_dir) / spec.benchmark / spec.folder
