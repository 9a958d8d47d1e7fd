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
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from transformers import get_linear_schedule_with_warmup

from pet_lightning.backbones import DEFAULT_BACKBONE, load_backbone
from pet_lightning.feature_cache import FeatureCache
from pet_lightning.metrics import build_metrics
from pet_lightning.seeds import dropout_rng_state, restore_dropout_rng_state, seed_training_randomness
from pet_lightning.strategies import Strategy, StrategyReport, build_strategy
from pet_lightning.strategies.base import unwrap
from pet_lightning.tasks import TaskSpec, get_task

CHECKPOINT_FORMAT = 1
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def _no_decay(module: nn.Module, param_name: str) -> bool:
    """Biases and normalisation weights get no weight decay (as in BERT and the PETuning code bases)."""
    return param_name.endswith("bias") or "norm" in type(module).__name__.lower()


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
    ):
        super().__init__()
        if learning_rate <= 0:
            raise ValueError(f"learning_rate={learning_rate}: use a positive learning rate")
        if not 0 <= warmup_ratio < 1:
            raise ValueError(f"warmup_ratio={warmup_ratio}: use a fraction in [0, 1)")
        self.spec: TaskSpec = get_task(task)
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

    # ------------------------------------------------------------------------------------------- building
    def _build(self, backbone: str, init_seed: int | None, hidden_dropout: float | None):
        overrides = {}
        if hidden_dropout is not None:
            overrides = {"hidden_dropout_prob": hidden_dropout, "attention_probs_dropout_prob": hidden_dropout}
        from pet_lightning.backbones import load_config

        config = load_config(backbone, self.spec, **overrides)
        seeded = torch.random.fork_rng(devices=[]) if init_seed is not None else contextlib.nullcontext()
        with seeded:
            if init_seed is not None:
                torch.manual_seed(init_seed)
            model = load_backbone(backbone, self.spec, config)
            report = self.strategy.apply(model)
        return report.model, report

    def apply_strategy(self, strategy: str | dict[str, Any] | Strategy) -> StrategyReport:
        """Switch to another strategy (two-stage training): undo the current one, apply the new one."""
        plain = self.strategy.remove(self.model)
        self.strategy = build_strategy(strategy)
        self.report = self.strategy.apply(plain)
        self.model = self.report.model
        # Cached features belong to the previous encoder state (stage 1 may have trained part of it).
        self.feature_cache.clear()
        return self.report

    def freeze_to_strategy(self) -> StrategyReport:
        """Re-assert the strategy's ``requires_grad`` flags (anything may have touched them since)."""
        trainable = set(self.report.trainable_names)
        for name, param in self.model.named_parameters():
            param.requires_grad_(name in trainable)
        return self.report

    # ------------------------------------------------------------------------------------------ metrics
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        eval_suffixes = getattr(datamodule, "eval_suffixes", None)
        if eval_suffixes is None:
            return
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
        datamodule = getattr(self.trainer, "datamodule", None)
        self.strategy.check_run(
            self.model, max_length=getattr(datamodule, "max_length", None), precision=str(self.trainer.precision)
        )

    def _metric_list(self, prefix: str, suffixes: list[str]) -> nn.ModuleList:
        return nn.ModuleList([build_metrics(self.spec, prefix=prefix, postfix=s) for s in suffixes]).to(self.device)

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {key: batch[key] for key in MODEL_INPUT_KEYS if key in batch}
        # The scope (split + dataloader) is set by the step methods only, so direct calls never read the cache.
        scope, self._feature_scope = self._feature_scope, None
        if scope is not None and "idx" in batch and self.caches_features():
            return self.feature_cache.logits(self.model, inputs, batch["idx"], scope)
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
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def _evaluate(self, batch, dataloader_idx: int, metrics: nn.ModuleList, losses: nn.ModuleList) -> None:
        logits = self(batch)
        # Grouped metrics need `group`; ReCoRD ranks candidates by their logits and scores the chosen one with its
        # `answer_f1` / `answer_em`. Each metric receives only the keywords its update() accepts.
        extras = {key: batch[key] for key in ("group", "answer_f1", "answer_em") if key in batch}
        metrics[dataloader_idx].update(self.predictions(logits), batch["label"], logits=logits.float(), **extras)
        losses[dataloader_idx].update(self.loss(logits, batch["label"]), weight=len(logits))

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._feature_scope = f"val/{dataloader_idx}"
        self._evaluate(batch, dataloader_idx, self.val_metrics, self.val_losses)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._feature_scope = f"test/{dataloader_idx}"
        self._evaluate(batch, dataloader_idx, self.test_metrics, self.test_losses)

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
        """AdamW groups: head vs. the rest (own learning rates), each with and without weight decay.

        Only parameters that require grad are given to the optimizer, so frozen tensors get no state.
        Partly trained (masked) tensors get no weight decay: decay would move their frozen elements.
        """
        head_names = set(self.report.head_names)
        masked = set(self.report.masks)
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for module_name, module in self.model.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                name = f"{module_name}.{param_name}" if module_name else param_name
                decay = not (_no_decay(module, param_name) or name in masked)
                groups.setdefault((name in head_names, decay), []).append(param)
        wd = self.hparams.weight_decay
        return [
            {
                "params": params,
                "lr": head_learning_rate if is_head else learning_rate,
                "weight_decay": wd if decay else 0.0,
                "name": f"{'head' if is_head else 'body'}{'' if decay else '_no_decay'}",
            }
            for (is_head, decay), params in sorted(groups.items())
        ]

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
        optimizer = torch.optim.AdamW(
            groups, lr=settings["learning_rate"], betas=tuple(self.hparams.adam_betas), eps=self.hparams.adam_eps
        )
        total = settings["total_steps"] or max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(settings["warmup_ratio"] * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -------------------------------------------------------------------------------------- checkpoints
    def on_train_start(self) -> None:
        # A fit resumed from a checkpoint continues the dropout stream where the checkpoint left it. Here rather
        # than in on_fit_start: every strategy has restored the checkpoint by now (FSDP and DeepSpeed restore it
        # after on_fit_start), and the sanity check is over.
        if self._resumed_rng is not None and self.trainer.ckpt_path is not None:
            restore_dropout_rng_state(self._resumed_rng)
        self._resumed_rng = None

    def trainable_state_keys(self) -> set[str]:
        """State-dict keys a checkpoint must hold: every tensor that trains (head included)."""
        return {f"model.{name}" for name, p in self.model.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self.trainable_state_keys()
        state = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        masks = {name: mask.cpu() for name, mask in self.report.masks.items()}
        # Partly trained tensors: only the values at their mask positions (the rest is the pretrained tensor).
        masked_values = {
            name: state.pop(f"model.{name}").detach().cpu().flatten()[_mask_index(mask)]
            for name, mask in masks.items()
            if f"model.{name}" in state
        }
        checkpoint["state_dict"] = state
        checkpoint["pet_lightning"] = {
            "format": CHECKPOINT_FORMAT,
            "backbone": self.backbone_name,
            "strategy": self.strategy.config_dict(),
            "report": self.report.as_dict(),
            "masks": {name: {"shape": tuple(mask.shape), "index": _mask_index(mask)} for name, mask in masks.items()},
            "masked_values": masked_values,
            "packed_optimizer_states": self._pack_optimizer_states(checkpoint, masks),
            "rng": dropout_rng_state(),
        }

    def _pack_optimizer_states(
        self, checkpoint: dict[str, Any], masks: dict[str, torch.Tensor]
    ) -> dict[int, dict[int, tuple[str, list[str]]]]:
        """Shrink AdamW moments of partly trained tensors to their mask positions (they are zero elsewhere).

        Returns ``{optimizer: {state index: (parameter name, packed keys)}}`` for :meth:`on_load_checkpoint`.
        A moment that is not zero off the mask is kept whole.
        """
        if not masks or "optimizer_states" not in checkpoint or self._trainer is None:
            return {}
        names = {id(p): name for name, p in self.model.named_parameters()}
        packed: dict[int, dict[int, tuple[str, list[str]]]] = {}
        for opt_index, optimizer in enumerate(self.trainer.optimizers):
            states = checkpoint["optimizer_states"][opt_index]["state"]
            params = [p for group in optimizer.param_groups for p in group["params"]]
            for param_index, param in enumerate(params):
                name = names.get(id(param))
                if name not in masks or param_index not in states:
                    continue
                mask = masks[name].to(param.device)
                # A new dict: the one in the checkpoint is the optimizer's live state.
                state = dict(states[param_index])
                keys = [
                    key
                    for key, value in state.items()
                    if isinstance(value, torch.Tensor) and value.shape == mask.shape and not value[~mask].any()
                ]
                for key in keys:
                    state[key] = state[key][mask]
                states[param_index] = state
                if keys:
                    packed.setdefault(opt_index, {})[param_index] = (name, keys)
        return packed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get("pet_lightning")
        if info is None:
            raise ValueError("this checkpoint was not written by pet_lightning: load it with plain Lightning")
        if info["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {info['format']} is not {CHECKPOINT_FORMAT}: upgrade pet_lightning")
        self._resumed_rng = info.get("rng")
        stored_strategy = info["strategy"]
        if stored_strategy != self.strategy.config_dict():
            # Two-stage training switches strategy mid-run: follow the checkpoint.
            self.apply_strategy(stored_strategy)
        masks = {name: _unpack_mask(mask) for name, mask in info.get("masks", {}).items()}
        for name, mask in masks.items():
            if name in self.report.masks and not torch.equal(self.report.masks[name].cpu(), mask):
                raise ValueError(
                    f"mask of {name} differs from the checkpoint's: build the module with the same init_seed"
                )
        # Rebuild partly trained tensors: the pretrained tensor (their frozen elements never change) with the
        # stored values at the mask positions; likewise the optimizer state, which is zero off the mask.
        parameters = dict(self.model.named_parameters())
        for name, values in info.get("masked_values", {}).items():
            full = parameters[name].detach().clone().cpu()
            full.view(-1)[_mask_index(masks[name])] = values.to(full.dtype)
            checkpoint["state_dict"][f"model.{name}"] = full
        for opt_index, entries in info.get("packed_optimizer_states", {}).items():
            states = checkpoint["optimizer_states"][opt_index]["state"]
            for param_index, (name, keys) in entries.items():
                mask = masks[name]
                for key in keys:
                    packed = states[param_index][key]
                    full = torch.zeros(mask.numel(), dtype=packed.dtype, device=packed.device)
                    full[_mask_index(mask).to(packed.device)] = packed
                    states[param_index][key] = full.view(mask.shape)
        missing = self.trainable_state_keys() - set(checkpoint["state_dict"])
        if missing:
            raise ValueError(
                f"checkpoint lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]}): it was written "
                "for another strategy or model; pass the matching model settings"
            )
        # Checkpoints hold only trainable tensors; the frozen rest comes from the freshly built backbone, so the
        # strict load that follows sees a complete state dict and still rejects tensors this module lacks.
        for key, value in self.state_dict().items():
            checkpoint["state_dict"].setdefault(key, value)


def _mask_index(mask: torch.Tensor) -> torch.Tensor:
    """Flat positions of the True elements: far smaller than the bool mask for sparse selections."""
    index = mask.flatten().nonzero().squeeze(1).cpu()
    return index.int() if mask.numel() < 2**31 else index


def _unpack_mask(stored: torch.Tensor | dict[str, Any]) -> torch.Tensor:
    if isinstance(stored, torch.Tensor):
        return stored
    mask = torch.zeros(math.prod(stored["shape"]), dtype=torch.bool)
    mask[stored["index"]] = True
    return mask.view(stored["shape"])


def _compute(collection: MetricCollection) -> dict[str, torch.Tensor]:
    return {name: value.float() for name, value in collection.compute().items()}
