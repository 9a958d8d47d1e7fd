"""Task heads: the Hugging Face model's own classifier, or the EH-FT study's 2-layer MLP.

``PETModule(head="mlp", head_hidden_size=2048, head_init_std=0.005)`` replaces the freshly initialised head of a
Hugging Face ``*ForSequenceClassification`` / ``*ForMultipleChoice`` model by ``Linear(hidden, 2048) -> ReLU ->
Linear(2048, outputs)``, as the EH-FT code does (``NEW_MLPHeadMixin``: hidden 2048, ReLU, weights drawn from
N(0, 0.005)). ``outputs`` is the number of classes, 1 for regression, and 1 score per choice for multiple choice.

What the MLP reads: the features the model's own head reads, minus the head's own (randomly initialised)
projection layers. BERT-like models feed their classifier the encoder's pooler output (the pooler is pretrained
and part of the encoder, so it stays there); RoBERTa and ELECTRA heads (``dense -> tanh/gelu -> out_proj``) are
replaced whole and the MLP reads the first token's final hidden state, as the study's RoBERTa head did; DeBERTa's
``ContextPooler`` and ELECTRA's multiple-choice ``sequence_summary`` (both new, not pretrained) become a
parameter-free first-token pick; DistilBERT's forward applies ReLU and dropout between its ``pre_classifier``
and ``classifier``, so those two become the MLP's two layers. The model's own dropout before its classifier stays
where its forward applies it (the study's head had none).

Biases start at zero. The study's code left them at PyTorch's default (uniform in +-1/sqrt(fan_in)); zero makes a
"fresh head's bias" (``TwoStageTraining(keep_head_bias=False)``, which copies only the weights, like the study)
the same for every seed. Everything here lives outside ``model.base_model``, so
:func:`pet_lightning.strategies.base.head_parameters` finds exactly the MLP: every strategy trains it, peft keeps
and saves it (``modules_to_save``), checkpoints hold it and two-stage training keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pet_lightning.errors import PetLightningError
from pet_lightning.strategies.base import backbone_of, head_parameters
from pet_lightning.tasks import TaskSpec

HEAD_KINDS = ("hf", "mlp")
POOLERS = ("pretrained", "first_token", "mean")


class HeadError(PetLightningError):
    """A head cannot be built as configured; the message names the problem and the fix."""


class MLPHead(nn.Module):
    """``Linear(in, hidden) -> ReLU -> Linear(hidden, out)``; weights from N(0, init_std), biases zero.

    A ``[batch, length, hidden]`` input is read at its first token (the RoBERTa / ELECTRA heads receive the whole
    sequence); a ``[batch, hidden]`` input (a pooler's output) is used as it is.
    """

    def __init__(self, in_features: int, hidden_size: int, out_features: int, init_std: float):
        super().__init__()
        self.dense = nn.Linear(in_features, hidden_size)
        self.out_proj = nn.Linear(hidden_size, out_features)
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.dense, self.out_proj):
            nn.init.normal_(layer.weight, mean=0.0, std=self.init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if features.dim() == 3:
            features = features[:, 0]
        return self.out_proj(F.relu(self.dense(features)))


class FirstToken(nn.Module):
    """Stands in for a freshly initialised pooler (DeBERTa's ``ContextPooler``, ELECTRA's ``sequence_summary``):
    the first token's final hidden state, with no parameters of its own."""

    def __init__(self, output_dim: int):
        super().__init__()
        self.output_dim = output_dim

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states[:, 0]


class MeanPooling(nn.Module):
    """Stands in for the encoder's pooler: the mean of the final hidden states over the attended tokens, as
    sentence-transformers trained all-MiniLM-L6-v2 (its ``Pooling(mean)``; the ``Normalize`` after it is left out,
    the head learns its own scale). No parameters.

    A pooler is called with the hidden states only, so the attention mask is read by a forward pre-hook on the
    encoder (:meth:`record_mask`) and used by the pooler call inside that same forward.
    """

    def __init__(self, output_dim: int):
        super().__init__()
        self.output_dim = output_dim
        self.mask: torch.Tensor | None = None

    def record_mask(self, encoder: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        # BertModel.forward(input_ids, attention_mask, ...): the mask comes by keyword from the HF heads.
        self.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        mask, self.mask = self.mask, None  # consumed: no batch's mask outlives its forward
        return masked_mean(hidden_states, mask)


def masked_mean(hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``[batch, length, hidden]`` over the positions where ``mask`` is 1 (all positions when None)."""
    if mask is None:
        return hidden_states.mean(dim=1)
    # Prefix tuning prepends its virtual tokens' mask; they live in the keys, not in the hidden states.
    weights = mask[:, -hidden_states.shape[1]:].to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def check_head_settings(head: str, hidden_size: int, init_std: float, pooler: str = "pretrained") -> None:
    if pooler not in POOLERS:
        raise HeadError(f"pooler={pooler!r}: choose one of {', '.join(POOLERS)}")
    if head not in HEAD_KINDS:
        raise HeadError(f"head={head!r}: choose one of {', '.join(HEAD_KINDS)}")
    if head == "mlp" and (not isinstance(hidden_size, int) or hidden_size < 1):
        raise HeadError(f"head_hidden_size={hidden_size!r}: use a positive integer, e.g. 2048 (the EH-FT study's)")
    if head == "mlp" and not init_std > 0:
        raise HeadError(f"head_init_std={init_std!r}: use a positive standard deviation, e.g. 0.005")


def bypass_pooler(model: nn.Module) -> nn.Module:
    """Replace the encoder's pooler (BERT's ``dense -> tanh`` on the first token) by the first token's hidden state.

    For checkpoints whose pooler was never trained: all-MiniLM-L6-v2 (a sentence-transformers model, trained
    through mean pooling) ships a pooler with zero biases and weights of std 0.009, which shrinks the first
    token's features about five-fold (per-dimension std 0.27 -> 0.048) through a random projection. Strategies
    that cannot rescale features (BitFit, a frozen head) then see near-constant inputs.
    """
    encoder = backbone_of(model)
    if getattr(encoder, "pooler", None) is None:
        raise HeadError(f"pooler='first_token': {type(encoder).__name__} has no pooler to bypass: use "
                        "pooler='pretrained'")
    encoder.pooler = FirstToken(model.config.hidden_size)
    return model


def mean_pool(model: nn.Module) -> nn.Module:
    """Replace the encoder's pooler by :class:`MeanPooling` (the masked mean of the token states): the features a
    sentence-embedding backbone such as all-MiniLM-L6-v2 was trained to produce."""
    encoder = backbone_of(model)
    if getattr(encoder, "pooler", None) is None:
        raise HeadError(f"pooler='mean': {type(encoder).__name__} has no pooler to replace (its head reads the first "
                        "token): use pooler='pretrained'")
    encoder.pooler = MeanPooling(model.config.hidden_size)
    encoder.register_forward_pre_hook(encoder.pooler.record_mask, with_kwargs=True)
    return model


def install_head(model: nn.Module, spec: TaskSpec, head: str = "hf", hidden_size: int = 2048,
                 init_std: float = 0.005, pooler: str = "pretrained") -> nn.Module:
    """Replace the Hugging Face head of ``model`` (in place) by the head ``head`` names; returns ``model``.

    ``hf`` keeps the model's own head. ``pooler='first_token'`` also bypasses the encoder's pooler (see
    :func:`bypass_pooler`), ``pooler='mean'`` replaces it by the masked mean of the token states (:func:`mean_pool`).
    Draws from the global random stream (the module calls this under its ``init_seed``).
    """
    check_head_settings(head, hidden_size, init_std, pooler)
    if pooler == "first_token":
        bypass_pooler(model)
    elif pooler == "mean":
        mean_pool(model)
    if head == "hf":
        return model
    width = model.config.hidden_size
    outputs = 1 if spec.kind == "multiple_choice" else model.config.num_labels
    mlp = MLPHead(width, hidden_size, outputs, init_std)
    children = dict(model.named_children())
    outside = {name for name, child in children.items() if child is not backbone_of(model)}
    if {"pre_classifier", "classifier"} <= outside:
        # DistilBERT: its forward runs pre_classifier -> ReLU -> dropout -> classifier, i.e. the MLP.
        model.pre_classifier, model.classifier = mlp.dense, mlp.out_proj
    elif "classifier" in outside:
        for pooler in ("pooler", "sequence_summary"):
            if pooler in outside:
                setattr(model, pooler, FirstToken(width))
        model.classifier = mlp
    else:
        raise HeadError(
            f"head='mlp' does not know where {type(model).__name__} keeps its classifier (it has "
            f"{', '.join(sorted(outside)) or 'nothing'} outside the encoder): use head='hf' for this model"
        )
    trained = [name for name in outside if any(True for _ in getattr(model, name).parameters())]
    if sorted(trained) not in (["classifier"], ["classifier", "pre_classifier"]):
        raise HeadError(
            f"head='mlp' left {sorted(trained)} of {type(model).__name__} outside the encoder: use head='hf' for "
            "this model"
        )
    return model


def set_output_bias(model: nn.Module, value: float, head: str = "hf") -> None:
    """Fill the one-unit output bias of a regression head (the last one among the head's parameters)."""
    outputs = [p for name, p in head_parameters(model).items() if name.endswith("bias") and p.numel() == 1]
    if not outputs:
        raise HeadError(f"found no one-unit output bias in the {head!r} head to set: set regression_bias: zero")
    with torch.no_grad():
        outputs[-1].fill_(value)


def install_head_from(hparams: Mapping[str, Any], model: nn.Module, spec: TaskSpec) -> nn.Module:
    """:func:`install_head` with a module's ``head``, ``head_hidden_size`` and ``head_init_std`` hyper-parameters
    (absent in checkpoints written before the option existed: those keep the Hugging Face head)."""
    return install_head(model, spec, hparams.get("head", "hf"), hparams.get("head_hidden_size", 2048),
                        hparams.get("head_init_std", 0.005), hparams.get("pooler", "pretrained"))


__all__ = [
    "FirstToken", "HEAD_KINDS", "MeanPooling", "POOLERS", "HeadError", "MLPHead", "bypass_pooler",
    "check_head_settings", "install_head", "install_head_from", "masked_mean", "mean_pool", "set_output_bias",
]
