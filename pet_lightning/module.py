"""PETModule: a pretrained encoder, a task head and a tuning strategy as one LightningModule.

Usable by import alone::

    from pet_lightning import PETModule
    from pet_lightning.data import GlueDataModule

    model = PETModule(backbone="minilm", task="rte", strategy="bitfit", learning_rate=1e-3)
    trainer.fit(model, datamodule=GlueDataModule(task="rte", data_dir="data"))

Checkpoints hold only what trains (the strategy's tensors and the head) plus the strategy, the backbone id
and the hyper-parameters; loading rebuilds the backbone from its source and restores them.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from pet_lightning.backbones import DEFAULT_BACKBONE, load_backbone
from pet_lightning.checkpoint_format import check_fit, check_identity, pack_state, unpack_state
from pet_lightning.checkpoint_io import CheckpointError, install_atomic_checkpoint_io, load_checkpoint_file
from pet_lightning.data.contract import task_data
from pet_lightning.device import prepare_device
from pet_lightning.feature_cache import FeatureCache
from pet_lightning.heads import install_head_from, set_output_bias
from pet_lightning.loop_restart import repair_epoch_end_restart
from pet_lightning.metrics import build_metrics
from pet_lightning.optim import adamw, build_scheduler, fused_allowed, parameter_groups
from pet_lightning.run_checks import check_data_matches, check_max_length, check_optimizer_numbers
from pet_lightning.seeds import all_ranks_rng_state, restore_rank_rng_state, seed_training_randomness
from pet_lightning.strategies import Strategy, StrategyReport, build_strategy
from pet_lightning.strategies.base import unwrap
from pet_lightning.tasks import TaskSpec, get_task

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
# The file load_from_checkpoint is reading, for the messages of on_load_checkpoint (which Lightning calls without it).
_LOADING_FROM: contextvars.ContextVar[str | None] = contextvars.ContextVar("pet_lightning_loading_from", default=None)


REGRESSION_BIAS = ("zero", "label_mean")


class PETModule(L.LightningModule):
    """A pretrained language model tuned with a strategy on a GLUE / SuperGLUE task.

    Args:
        backbone: Hugging Face hub name, local folder, or ``minilm`` (the packaged offline model).
        task: Task name; decides the head (classification, regression, multiple choice), loss and metrics.
        strategy: What trains: a registered name (``full``, ``bitfit``, ``lora``...), a dict
            ``{"name": ..., **settings}`` or a :class:`~pet_lightning.strategies.Strategy`.
        learning_rate: Peak learning rate of the backbone / method parameters.
        head_learning_rate: Peak learning rate of the task head; defaults to ``learning_rate``.
        weight_decay: AdamW weight decay (not on biases, normalisation weights or masked tensors).
        warmup_ratio: Fraction of the optimisation steps spent warming up linearly; then linear decay to 0.
        adam_betas: AdamW betas.
        adam_eps: AdamW epsilon.
        init_seed: Seed of everything initialised here (head, injected modules, random masks). None uses the
            global random state (set by ``seed_everything``).
        hidden_dropout: Override the backbone's dropout probability (None keeps the pretrained config's).
        cache_features: Compute the frozen encoder's features once per example and train / evaluate the head on
            them (see :mod:`pet_lightning.feature_cache`). None: on for the ``frozen`` strategy (linear probing,
            LP-FT stage 1); True: on whenever only the head trains; False: off. Features come from the encoder
            in eval mode (no encoder dropout).
        head: ``hf`` keeps the Hugging Face model's own classifier; ``mlp`` replaces it by the EH-FT study's
            ``Linear -> ReLU -> Linear`` head (see :mod:`pet_lightning.heads`), for every task kind and strategy.
        head_hidden_size: Hidden width of the ``mlp`` head (2048 in the study).
        head_init_std: Standard deviation of the ``mlp`` head's initial weights (0.005 in the study; biases 0).
        regression_bias: Start value of a regression head's output bias: ``zero`` (the Hugging Face head) or
            ``label_mean`` (the training labels' mean, set when a fit starts from scratch). From zero, AdamW
            moves the bias by about one learning rate per step: at 1e-5..1e-3 a few hundred steps cannot reach an
            STS-B mean of 2.7, so a short run spends them shifting the mean and can end predicting a constant.
        pooler: ``pretrained`` keeps the encoder's pooler; for checkpoints whose pooler was never trained (the
            offline MiniLM's), ``first_token`` feeds the head the first token's hidden state and ``mean`` the masked
            mean of the token states, as sentence-transformers trained MiniLM (:mod:`pet_lightning.heads`).
        tf32: On CUDA, run float32 matrix products on TF32 tensor cores (Ampere and later; see
            :mod:`pet_lightning.device`). compile: ``torch.compile`` the model at fit start (for GPUs).
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        task: str = "rte",
        strategy: str | dict[str, Any] | Strategy = "full",
        learning_rate: float = 2e-5,
        head_learning_rate: float | None = None,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.06,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        init_seed: int | None = None,
        hidden_dropout: float | None = None,
        cache_features: bool | None = None,
        head: str = "hf",
        head_hidden_size: int = 2048,
        head_init_std: float = 0.005,
        regression_bias: str = "zero",
        pooler: str = "pretrained",
        tf32: bool = True,
        compile: bool = False,
    ):
        super().__init__()
        check_optimizer_numbers(learning_rate, head_learning_rate, weight_decay, warmup_ratio)
        if regression_bias not in REGRESSION_BIAS:
            raise ValueError(f"regression_bias={regression_bias!r}: choose one of {', '.join(REGRESSION_BIAS)}")
        self.spec: TaskSpec = get_task(task)
        task = self.spec.reference  # canonical (SST2 -> sst-2; a task file: its path) as in the data module's hparams
        self.strategy: Strategy = build_strategy(strategy)
        self.save_hyperparameters(ignore=["strategy"])
        self.hparams["strategy"] = self.strategy.config_dict()
        self.backbone_name = backbone
        self.model, self.report = self._build(backbone, init_seed, hidden_dropout)
        self.optimizer_overrides: dict[str, Any] = {}
        self.val_metrics = nn.ModuleList([build_metrics(self.spec, prefix="val/")])
        self.test_metrics = nn.ModuleList([build_metrics(self.spec, prefix="test/")])
        self.val_losses = nn.ModuleList([MeanMetric()])
        self.test_losses = nn.ModuleList([MeanMetric()])
        self._suffixes = {"val": [""], "test": [""]}
        self.feature_cache = FeatureCache()
        self._feature_scope: str | None = None
        self._resumed_rng: dict[str, torch.Tensor] | None = None
        # True while every tensor still is what _build made (pretrained backbone, init_seed's head and modules):
        # only then may a checkpoint load take the tensors it does not hold from this module (on_load_checkpoint).
        self._matches_source = True

    # ------------------------------------------------------------------------------------------- building
    def _build(
        self, backbone: str, init_seed: int | None, hidden_dropout: float | None, strategy: Strategy | None = None,
        inputs: dict[str, Any] | None = None,
    ):
        from pet_lightning.backbones import load_config, set_dropout

        config = load_config(backbone, self.spec)
        if hidden_dropout is not None:
            set_dropout(config, hidden_dropout)
        seeded = torch.random.fork_rng(devices=[]) if init_seed is not None else contextlib.nullcontext()
        with seeded:
            if init_seed is not None:  # the CPU generator only: the model is built there, dropout draws on CUDA's
                torch.default_generator.manual_seed(init_seed)
            model = load_backbone(backbone, self.spec, config)
            install_head_from(self.hparams, model, self.spec)
            report = (strategy or self.strategy).apply(model, **(inputs or {}))
        return report.model, report

    def apply_strategy(self, strategy: str | dict[str, Any] | Strategy, **inputs: Any) -> StrategyReport:
        """Switch to another strategy (two-stage training), or re-apply one with data it needs (Child-Tuning's
        ``fisher``): undo the current application (:attr:`report`), apply the new one."""
        plain = self.report.remove()
        self.strategy = build_strategy(strategy)
        self.report = self.strategy.apply(plain, **inputs)
        self.model = self.report.model
        # Cached features belong to the previous encoder state (stage 1 may have trained part of it).
        self.feature_cache.clear()
        # The tensors the new strategy freezes may have trained under the old one (see on_load_checkpoint).
        self._matches_source = False
        return self.report

    def freeze_to_strategy(self) -> StrategyReport:
        """Re-assert the strategy's ``requires_grad`` flags (anything may have touched them since)."""
        trainable = set(self.report.trainable_names)
        for name, param in self.model.named_parameters():
            param.requires_grad_(name in trainable)
        return self.report

    # ------------------------------------------------------------------------------------------ metrics
    def setup(self, stage: str) -> None:
        install_atomic_checkpoint_io(self.trainer)  # atomic writes, weights_only loads (pet_lightning.checkpoint_io)
        data = task_data(self.trainer)
        # here: before Lightning merges (and compares) both hparams
        check_data_matches(self, None if data is None else data.spec)
        if data is None:  # a user's own data module: no per-dataloader metrics
            return
        eval_suffixes = data.eval_suffixes
        if stage in ("fit", "validate"):
            self._suffixes["val"] = eval_suffixes("val")
            self.val_metrics = self._metric_list("val/", self._suffixes["val"])
            self.val_losses = nn.ModuleList([MeanMetric() for _ in self._suffixes["val"]])
        if stage == "test":
            self._suffixes["test"] = eval_suffixes("test")
            self.test_metrics = self._metric_list("test/", self._suffixes["test"])
            self.test_losses = nn.ModuleList([MeanMetric() for _ in self._suffixes["test"]])

    def on_fit_start(self) -> None:
        # Dropout follows the data-order seed, never the init seed (see pet_lightning.seeds).
        seed_training_randomness(self.trainer)
        data = task_data(self.trainer)
        check_max_length(self, max_length := data.max_length if data else None)  # every strategy; then its own
        self.strategy.check_run(self.model, max_length=max_length, precision=str(self.trainer.precision),
                                applied=self.report)
        prepare_device(self, tf32=self.hparams.get("tf32", True), compile=self.hparams.get("compile", False))
        if self.trainer.ckpt_path is None and self.trainer.global_step == 0:
            self.fill_regression_bias()

    def fill_regression_bias(self) -> float | None:
        """With ``regression_bias='label_mean'``, set a regression head's output bias to the training labels'
        mean (see :func:`pet_lightning.heads.set_output_bias`); returns it, or None when there is nothing to set."""
        if self.hparams.get("regression_bias", "zero") != "label_mean" or self.spec.kind != "regression":
            return None
        data = task_data(self.trainer)
        plan = data.plan if data else None
        if plan is None or not plan.train:
            raise ValueError(
                "regression_bias='label_mean' reads the training labels of a pet_lightning TaskDataModule: use one, "
                "or set regression_bias: zero"
            )
        mean = sum(float(example["label"]) for example in plan.train) / len(plan.train)
        set_output_bias(self.model, mean, self.hparams.head)
        return mean

    def _metric_list(self, prefix: str, suffixes: list[str]) -> nn.ModuleList:
        return nn.ModuleList([build_metrics(self.spec, prefix=prefix, postfix=s) for s in suffixes]).to(self.device)

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {key: batch[key] for key in MODEL_INPUT_KEYS if key in batch}
        # The scope (split + dataloader) is set by the step methods only, so direct calls never read the cache.
        scope, self._feature_scope = self._feature_scope, None
        if scope is not None and "idx" in batch and self.caches_features():
            return self.feature_cache.logits(self.model, inputs, batch["idx"], scope, batch.get("cache_keys"))
        return self.model(**inputs).logits

    def caches_features(self) -> bool:
        """Whether the forward pass reads encoder features from :attr:`feature_cache` (only the head trains)."""
        wanted = self.hparams.get("cache_features")
        if wanted is False or (wanted is None and self.strategy.name != "frozen"):
            return False
        head = set(self.report.head_names)
        return self.model is unwrap(self.model) and all(
            name in head for name, p in self.model.named_parameters() if p.requires_grad
        )

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.spec.kind == "regression":
            return F.mse_loss(logits.squeeze(-1).float(), labels.float())
        return F.cross_entropy(logits.float(), labels)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        if self.spec.kind == "regression":
            return logits.squeeze(-1).float()
        return logits.argmax(dim=-1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self._feature_scope = "train"
        logits = self(batch)
        loss = self.loss(logits, batch["label"])
        self.log("train/loss", loss, prog_bar=self.device.type == "cpu", batch_size=len(logits))  # bar reads: syncs
        return loss

    def _evaluate(self, batch, dataloader_idx: int, metrics: nn.ModuleList,
                  losses: nn.ModuleList) -> dict[str, torch.Tensor]:
        logits = self(batch)
        # Grouped metrics need `group`; ReCoRD ranks candidates by their logits and scores the chosen one with its
        # `answer_f1` / `answer_em`. Each metric receives only the keywords its update() accepts.
        extras = {key: batch[key] for key in ("group", "answer_f1", "answer_em") if key in batch}
        metrics[dataloader_idx].update(self.predictions(logits), batch["label"], logits=logits.float(), **extras)
        losses[dataloader_idx].update(self.loss(logits, batch["label"]), weight=len(logits))
        return {"prediction": self.predictions(logits).detach(), "logits": logits.detach().float()}

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._feature_scope = f"val/{dataloader_idx}"
        self._evaluate(batch, dataloader_idx, self.val_metrics, self.val_losses)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        # Returned for ReportPredictions (the per-example predictions a sweep run keeps).
        self._feature_scope = f"test/{dataloader_idx}"
        return self._evaluate(batch, dataloader_idx, self.test_metrics, self.test_losses)

    def _log_epoch(self, split: str, metrics: nn.ModuleList, losses: nn.ModuleList) -> None:
        values: dict[str, torch.Tensor] = {}
        for suffix, collection, loss in zip(self._suffixes[split], metrics, losses):
            values.update(_compute(collection))
            values[f"{split}/loss{suffix}"] = loss.compute()
            collection.reset()
            loss.reset()
        values[f"{split}/headline"] = values[f"{split}/{self.spec.headline}"]
        # Metrics are already synchronised across processes by torchmetrics.
        self.log_dict(values, prog_bar=False, sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", self.val_metrics, self.val_losses)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", self.test_metrics, self.test_losses)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        logits = self(batch)
        return {"idx": batch["idx"], "prediction": self.predictions(logits), "logits": logits.float()}

    # ---------------------------------------------------------------------------------------- optimizer
    def parameter_groups(self, learning_rate: float, head_learning_rate: float) -> list[dict[str, Any]]:
        """AdamW groups of the trainable tensors (see :func:`pet_lightning.optim.parameter_groups`)."""
        return parameter_groups(self.model, set(self.report.head_names), set(self.report.masks),
                                getattr(self.strategy, "learning_rate_scale", None), self.hparams.weight_decay,
                                learning_rate, head_learning_rate)

    def configure_optimizers(self):
        settings = {
            "learning_rate": self.hparams.learning_rate,
            "head_learning_rate": self.hparams.head_learning_rate or self.hparams.learning_rate,
            "warmup_ratio": self.hparams.warmup_ratio,
            "total_steps": None,
            **self.optimizer_overrides,
        }
        groups = self.parameter_groups(settings["learning_rate"], settings["head_learning_rate"])
        if not groups:
            raise RuntimeError(f"strategy {self.strategy.name!r} left no trainable parameter: nothing would train")
        optimizer = adamw(groups, settings["learning_rate"], tuple(self.hparams.adam_betas), self.hparams.adam_eps,
                          allow_fused=fused_allowed(self._trainer))
        total = settings["total_steps"] or max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = build_scheduler(optimizer, settings, total)  # optimizer_overrides["schedule"] picks its shape
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -------------------------------------------------------------------------------------- checkpoints
    def on_train_start(self) -> None:
        # A fit resumed from a checkpoint continues the dropout stream where the checkpoint left it. Here rather
        # than in on_fit_start: every strategy has restored the checkpoint by now (FSDP and DeepSpeed restore it
        # after on_fit_start), and the sanity check is over.
        if self._resumed_rng is not None and self.trainer.ckpt_path is not None:
            restore_rank_rng_state(self._resumed_rng, self.trainer.global_rank, self.trainer.world_size)
        self._resumed_rng = None
        repair_epoch_end_restart(self.trainer)
        # From here on the trainable tensors leave their built values.
        self._matches_source = False

    def trainable_state_keys(self) -> set[str]:
        """State-dict keys a checkpoint must hold: every tensor that trains (head included)."""
        return {f"model.{name}" for name, p in self.model.named_parameters() if p.requires_grad}

    def pretrained_model(self, config: Any | None = None) -> nn.Module:
        """The backbone loaded again from its source, with a fresh head, in training mode.

        Loading initialises a new head: that happens off the global random stream, so reloading never shifts the
        dropout masks a run draws next. ``config`` defaults to the live model's.
        """
        with torch.random.fork_rng(devices=[]):
            fresh = load_backbone(self.backbone_name, self.spec, copy.deepcopy(config or unwrap(self.model).config))
            return install_head_from(self.hparams, fresh, self.spec)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args: Any, weights_only: bool | None = True, **kwargs: Any):
        """Lightning's ``load_from_checkpoint``, loading with ``weights_only=True`` and refusing a corrupt file, or
        one of another model, with one line that names the file."""
        if weights_only is False:
            raise CheckpointError("PETModule checkpoints load with weights_only=True only: they hold no objects")
        load_checkpoint_file(checkpoint_path, mmap=True)  # cheap: memory-mapped, but reads the whole structure
        token = _LOADING_FROM.set(str(checkpoint_path))
        try:
            return super().load_from_checkpoint(checkpoint_path, *args, weights_only=True, **kwargs)
        finally:
            _LOADING_FROM.reset(token)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"], checkpoint["pet_lightning"] = pack_state(
            self, checkpoint["state_dict"], checkpoint.get("optimizer_states")
        )
        checkpoint["pet_lightning"]["rng"] = all_ranks_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        source = _LOADING_FROM.get() or (self._trainer.ckpt_path if self._trainer is not None else None)
        source = str(source or "(in memory)")
        info = check_identity(self, checkpoint, source)
        stored = build_strategy(info["strategy"])
        same = stored.config_dict() == self.strategy.config_dict()
        if same and self._matches_source:
            model, report = self.model, self.report
        else:
            # The live module may have trained (a test after fit, a stage-1 checkpoint after stage 2): every tensor
            # the checkpoint lacks comes from a fresh build of its strategy over the pretrained source instead,
            # given the live application's inputs when it is the same strategy (Child-Tuning's Fisher scores).
            hp = self.hparams
            inputs = self.report.inputs if same else None
            model, report = self._build(self.backbone_name, hp.init_seed, hp.hidden_dropout, stored, inputs)
        masks = check_fit(checkpoint, info, model, report, source)
        # Everything is checked: only now does the module change (a refused file leaves it as it was).
        if model is not self.model:
            self.model, self.report, self.strategy = model, report, stored
            self.feature_cache.clear()
        unpack_state(checkpoint, info, masks, {f"model.{k}": v for k, v in model.state_dict().items()})
        self._resumed_rng = info.get("rng")
        self._matches_source = False


def _compute(collection: MetricCollection) -> dict[str, torch.Tensor]:
    return {name: value.float() for name, value in collection.compute().items()}
