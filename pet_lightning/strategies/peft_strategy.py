"""Any peft method as a strategy: the one code path behind ``peft`` and the presets (``lora``, ``dora``, ``vera``...).

A peft config is enough (:class:`~pet_lightning.strategies.peft_methods.PeftConfigStrategy`). In YAML::

    strategy:
      name: peft
      config: {class_path: peft.VeraConfig, init_args: {r: 256, target_modules: [query, value]}}

and in Python ``build_strategy("peft", config=VeraConfig(r=256, target_modules=["query", "value"]))``. The
strategy sets the task type, keeps the task head trainable and saved (peft ``modules_to_save``), wraps the model
with ``get_peft_model`` and reports counts the way the studies do: ``trainable`` is the method's own tensors,
``total`` the original backbone, the head is counted apart.

On multiple-choice models (COPA) prompt-learning methods (prefix, prompt, P-tuning) wrap the encoder instead of
the whole model, because peft's sequence-classification wrapper builds prefixes for ``[batch, length]`` inputs
while the multiple-choice model feeds the encoder ``[batch * choices, length]``. That encoder wrapper keeps the
token type ids (peft's feature-extraction wrapper drops them), so every method sees the same inputs.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pet_lightning.strategies.base import Strategy, StrategyError, StrategyReport, backbone_of, report_injected, unwrap
from pet_lightning.strategies.peft_config import MANAGED_FIELDS, build_config


def head_module_names(hf: nn.Module) -> list[str]:
    """Top-level modules of the task model outside the encoder that hold parameters (``classifier``,
    DistilBERT's ``pre_classifier``, DeBERTa's ``pooler``): what peft must keep trainable and save."""
    backbone = backbone_of(hf)
    return [
        name
        for name, child in hf.named_children()
        if child is not backbone and any(True for _ in child.parameters())
    ]


def _model_type(hf: nn.Module) -> str:
    return getattr(getattr(hf, "config", None), "model_type", type(hf).__name__)


def check_targets(strategy: str, hf: nn.Module, targets: list[str] | str) -> None:
    """Refuse target module names (suffixes) that match nothing in the encoder, naming its linear layers."""
    if isinstance(targets, str):  # a regular expression: peft matches it, its own error says when nothing does
        return
    backbone_names = [name for name, _ in backbone_of(hf).named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in backbone_names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in backbone_of(hf).named_modules() if isinstance(m, nn.Linear)})
        raise StrategyError(
            f"{strategy}: target module {', '.join(missing)} does not exist in {type(hf).__name__}: "
            f"use names of its linear layers, e.g. {', '.join(leaves)}"
        )


# ----------------------------------------------------------------------------------------- the strategy
@dataclass(frozen=True)
class PeftStrategy(Strategy):
    """Base of every peft-backed strategy. Subclasses say which peft config to build (:meth:`config_spec`);
    wrapping, freezing, counting, removal and export are shared."""

    def config_class(self) -> type:
        """The peft config class (``peft.LoraConfig``...)."""
        raise NotImplementedError

    def config_spec(self, hf: nn.Module) -> dict[str, Any]:
        """The peft config's settings for ``hf`` (task type and head excluded)."""
        raise NotImplementedError

    # LoRA+ (Hayou et al.): B matrices at `lora_plus_ratio` times the learning rate of the A matrices.
    def learning_rate_scale(self, name: str) -> float:
        """Factor on the body learning rate of parameter ``name`` (used by ``PETModule.parameter_groups``)."""
        ratio = getattr(self, "lora_plus_ratio", None)
        if ratio is not None and (".lora_B." in name or ".lora_embedding_B." in name):
            return float(ratio)
        return 1.0

    @property
    def is_prompt_learning(self) -> bool:
        """Prefix, prompt tuning, P-tuning: virtual tokens rather than tuner layers."""
        from peft import PromptLearningConfig

        return issubclass(self.config_class(), PromptLearningConfig)

    def _wraps_encoder(self, hf: nn.Module) -> bool:
        return self.is_prompt_learning and type(hf).__name__.endswith("ForMultipleChoice")

    def peft_config(self, hf: nn.Module, task_type: str) -> Any:
        cls, init_args = self.config_class(), copy.deepcopy(self.config_spec(hf))
        given = init_args.pop("task_type", None)
        given = None if given is None else str(getattr(given, "value", given))
        if given not in (None, "SEQ_CLS", task_type):
            raise StrategyError(
                f"{self.name}: {cls.__name__} with task_type={given} cannot wrap {type(hf).__name__}: "
                f"drop task_type (pet_lightning wraps the model as {task_type})"
            )
        for name in MANAGED_FIELDS - {"task_type"}:
            init_args.pop(name, None)
        targets = init_args.get("target_modules")
        if targets is not None:
            check_targets(self.name, hf, targets if isinstance(targets, str) else list(targets))
        managed: dict[str, Any] = {"task_type": task_type}
        if task_type == "SEQ_CLS":
            managed["modules_to_save"] = head_module_names(hf)
        return build_config(cls, init_args, **managed)

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import get_peft_model

        hf = unwrap(model)
        if hasattr(hf, "peft_config") or model is not hf:
            raise StrategyError(f"{self.name}: the model already carries a peft method: call remove() on its report "
                                "first")
        wraps_encoder = self._wraps_encoder(hf)
        config = self.peft_config(hf, "FEATURE_EXTRACTION" if wraps_encoder else "SEQ_CLS")
        target = getattr(hf, hf.base_model_prefix) if wraps_encoder else hf
        try:
            with warnings.catch_warnings():
                # peft warns that prompt learning drops token type ids; _EncoderPeftModel keeps them. It also reads
                # transformers' deprecated is_gradient_checkpointing (a FutureWarning on every build).
                warnings.filterwarnings("ignore", message=".*[Tt]oken type ids.*")
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                wrapped = get_peft_model(target, config)
        except (TypeError, ValueError, NotImplementedError) as err:
            raise StrategyError(
                f"{self.name}: peft cannot apply {type(config).__name__} to {type(hf).__name__} "
                f"({str(err).splitlines()[0].split('. ')[0]}): fix target_modules (name suffixes of its encoder "
                "layers) or the config"
            ) from None
        if wraps_encoder:
            wrapped.__class__ = _EncoderPeftModel
            setattr(hf, hf.base_model_prefix, wrapped)
            return hf
        return wrapped

    def apply(self, model: nn.Module) -> StrategyReport:
        # A config that adapts nothing in the encoder is refused by peft (no target, or only the head, which the
        # strategy keeps whole) in prepare, or by report_injected (no trained tensor), like any strategy selecting
        # nothing.
        wrapped = self.prepare(model)
        return report_injected(self, wrapped, added=self.added_parameters(wrapped))

    def added_parameters(self, model: nn.Module) -> set[str]:
        """Every parameter peft added, trained or not (AdaLoRA's fixed ``ranknum`` too): outside the backbone total."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        names = set(self.injected_parameters(model))
        for module_name, module in model.named_modules():
            if isinstance(module, BaseTunerLayer):
                own = (n for n, _ in module.named_parameters() if not n.startswith("base_layer."))
                names |= {f"{module_name}.{n}" for n in own}
        return names

    def injected_parameters(self, model: nn.Module) -> set[str]:
        """Parameters peft trains: its tuner layers' adapter weights (``adapter_layer_names``: ``lora_A``,
        ``vera_lambda_b``, ``ia3_l``..., not fixed ones such as AdaLoRA's ``ranknum``) and prompt encoders."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        names = {n for n, _ in model.named_parameters() if "prompt_encoder." in n}
        for module_name, module in model.named_modules():
            if isinstance(module, BaseTunerLayer):
                for attribute in module.adapter_layer_names:
                    holder = getattr(module, attribute, None)
                    if isinstance(holder, nn.Module):
                        names |= {f"{module_name}.{attribute}.{n}" for n, _ in holder.named_parameters()}
        return names

    def undo(self, applied: StrategyReport) -> nn.Module:
        """Drop the method (unmerged) and keep the trained head: returns the plain Hugging Face model.

        PiSSA and OLoRA initialisations moved part of the pretrained weights into the adapter; after removal the
        encoder holds the residual weights (two-stage training restores the pretrained ones).
        """
        from peft import PeftModel

        model = applied.model
        if isinstance(model, PeftModel):
            if not model.active_peft_config.is_prompt_learning:
                model.base_model.unload()
            hf = model.get_base_model()
        else:
            hf = model
            prefix = hf.base_model_prefix
            encoder = getattr(hf, prefix)
            if isinstance(encoder, PeftModel):
                setattr(hf, prefix, encoder.get_base_model())
        _unwrap_saved_modules(hf)
        if hasattr(hf, "peft_config"):
            del hf.peft_config
        return hf


def _check_lora_plus(name: str, ratio: float | None) -> None:
    if ratio is not None and ratio <= 0:
        raise StrategyError(f"{name} lora_plus_ratio={ratio}: use a positive ratio (the LoRA+ paper uses 16)")


def _encoder_peft_model_class() -> type:
    from peft import PeftModelForFeatureExtraction
    from peft.utils import PeftType

    class EncoderPeftModel(PeftModelForFeatureExtraction):
        """peft's feature-extraction wrapper, keeping token type ids (zeros on virtual tokens, as peft's
        sequence-classification wrapper does) instead of dropping them."""

        def _adjust_prompt_learning_kwargs(self, peft_config, *, kwargs, remove_token_type_ids: bool = True) -> None:
            super()._adjust_prompt_learning_kwargs(peft_config, kwargs=kwargs, remove_token_type_ids=False)
            token_types = kwargs.get("token_type_ids")
            if token_types is not None and peft_config.peft_type not in (PeftType.PREFIX_TUNING, PeftType.CARTRIDGE):
                virtual = token_types.new_zeros(token_types.shape[0], peft_config.num_virtual_tokens)
                kwargs["token_type_ids"] = torch.cat((virtual, token_types), dim=1)

    EncoderPeftModel.__name__ = EncoderPeftModel.__qualname__ = "EncoderPeftModel"
    return EncoderPeftModel


_EncoderPeftModel = _encoder_peft_model_class()


def _unwrap_saved_modules(hf: nn.Module) -> None:
    from peft.utils.other import ModulesToSaveWrapper

    for name, module in list(hf.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent = hf.get_submodule(name.rpartition(".")[0]) if "." in name else hf
            active = module.active_adapters
            trained = module.modules_to_save[module.active_adapter] if active else module.original_module
            setattr(parent, name.rpartition(".")[2], trained)
