"""The exact linear probe: solve a linear task head on a frozen encoder's features instead of training it by SGD.

A head trained by AdamW for a few hundred steps on features that vary little (the packaged MiniLM's pooler) learns
little more than the label mean, while the best linear head on the same features is much better (figures in
``docs/eh_ft.md``, "Exact linear probing"). Linear probing, as the LP-FT paper runs it, solves the head to
convergence:

* regression: ridge regression (scikit-learn ``Ridge``),
* classification: L2-regularised (multinomial) logistic regression by L-BFGS (``LogisticRegression``),

over a grid of regularisation strengths, each fit on the training split and scored on the **selection** split (the
first validation dataloader, never the report split) by its loss there (mean squared error / cross-entropy, the
quantity ``val/loss`` selects on); the strength with the lowest selection loss wins (the weaker one on a tie).
Features are standardised on the training split before the fit (so one grid suits every encoder) and the scaling
is folded back into the head's weights, so the module's head computes exactly the fitted model.

The features are what enters the head's linear layer, read by a forward hook on it: BERT's pooler output (after
the head's dropout, in eval mode). Only heads that are one linear layer can be solved exactly; the EH-FT MLP
(``head="mlp"``) and the RoBERTa / ELECTRA / DistilBERT / DeBERTa heads (a hidden layer of their own) are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pet_lightning.errors import PetLightningError
from pet_lightning.feature_cache import eval_mode
from pet_lightning.strategies.base import backbone_of, unwrap

# Ridge alpha, and 1/C for logistic regression: both penalise the squared weights against the *summed* loss.
DEFAULT_STRENGTHS = tuple(float(s) for s in np.logspace(-2, 4, 13))
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
# The logit given to a class no training example has (relative to the lowest fitted one): it is never predicted.
ABSENT_CLASS_OFFSET = 20.0


class ProbeError(PetLightningError):
    """The exact probe cannot run as configured; the message names the problem and the fix."""


@dataclass
class ProbeResult:
    """What the probe chose: the strength, its selection loss, and the loss of every strength tried."""

    kind: str
    strength: float
    selection_loss: float
    losses: dict[float, float] = field(default_factory=dict)
    absent_classes: tuple[int, ...] = ()


def linear_head(model: nn.Module) -> nn.Linear:
    """The head's only linear layer; a head with more parameter-holding layers (an MLP) is refused."""
    hf = unwrap(model)
    encoder = {id(m) for m in backbone_of(hf).modules()}
    holders = [
        (name, module)
        for name, module in hf.named_modules()
        if any(True for _ in module.parameters(recurse=False)) and id(module) not in encoder
    ]
    if len(holders) != 1 or not isinstance(holders[0][1], nn.Linear) or holders[0][1].bias is None:
        names = ", ".join(name for name, _ in holders) or "none"
        raise ProbeError(
            f"the exact linear probe solves a head that is one linear layer; {type(hf).__name__}'s head has {names}: "
            "use a BERT-like backbone with head='hf', or train this head by SGD (drop ExactLinearProbe)"
        )
    return holders[0][1]


def head_inputs(module, loader: Iterable[dict[str, torch.Tensor]], scope: str) -> tuple[np.ndarray, np.ndarray]:
    """(features entering the linear head, labels) over ``loader``, with the model in eval mode.

    ``module`` is a :class:`~pet_lightning.PETModule`; when it caches features (linear probing) the cache is read
    and filled under ``scope`` (``train``, ``val/0``), so the fit that follows reuses them.
    """
    linear = linear_head(module.model)
    seen: list[torch.Tensor] = []
    handle = linear.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    features: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    try:
        with torch.no_grad(), eval_mode(module.model):
            for batch in loader:
                batch = {k: v.to(module.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                inputs = {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}
                seen.clear()
                if module.caches_features() and "idx" in batch:
                    module.feature_cache.logits(module.model, inputs, batch["idx"], scope)
                else:
                    module.model(**inputs)
                # The last call is the one that made the logits (the cache's first-batch check runs the head too).
                features.append(seen[-1].float().cpu())
                labels.append(batch["label"].detach().cpu())
    finally:
        handle.remove()
    return torch.cat(features).double().numpy(), torch.cat(labels).numpy()


def _scaler(train: np.ndarray):
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit(train)


def solve_ridge(train: tuple[np.ndarray, np.ndarray], selection: tuple[np.ndarray, np.ndarray],
                strengths: Sequence[float] = DEFAULT_STRENGTHS) -> tuple[np.ndarray, np.ndarray, ProbeResult]:
    """Ridge over ``strengths`` (alpha), chosen by selection MSE; returns (weight [1, D], bias [1], result) in the
    raw feature space."""
    from sklearn.linear_model import Ridge

    scaler = _scaler(train[0])
    x_train, x_sel = scaler.transform(train[0]), scaler.transform(selection[0])
    losses, fits = {}, {}
    for alpha in strengths:
        fit = Ridge(alpha=alpha).fit(x_train, train[1].astype(np.float64))
        losses[alpha] = float(np.mean((fit.predict(x_sel) - selection[1]) ** 2))
        fits[alpha] = fit
    best = _best(losses)
    weight, bias = _fold(scaler, fits[best].coef_.reshape(1, -1), np.atleast_1d(fits[best].intercept_))
    return weight, bias, ProbeResult("ridge", best, losses[best], losses)


def solve_logistic(train: tuple[np.ndarray, np.ndarray], selection: tuple[np.ndarray, np.ndarray], num_classes: int,
                   strengths: Sequence[float] = DEFAULT_STRENGTHS, max_iter: int = 2000
                   ) -> tuple[np.ndarray, np.ndarray, ProbeResult]:
    """L2 logistic regression by L-BFGS over ``strengths`` (C = 1/strength), chosen by selection cross-entropy;
    returns (weight [num_classes, D], bias [num_classes], result) in the raw feature space."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(train[1])
    if len(present) < 2:
        raise ProbeError(f"the training split holds one class only ({present.tolist()}): a probe needs two or more")
    scaler = _scaler(train[0])
    x_train, x_sel = scaler.transform(train[0]), scaler.transform(selection[0])
    losses, fits = {}, {}
    for strength in strengths:
        fit = LogisticRegression(C=1.0 / strength, solver="lbfgs", max_iter=max_iter).fit(x_train, train[1])
        weight, bias = _class_rows(fit.coef_, fit.intercept_, fit.classes_, num_classes)
        losses[strength] = _cross_entropy(x_sel @ weight.T + bias, selection[1])
        fits[strength] = (weight, bias)
    best = _best(losses)
    weight, bias = _fold(scaler, *fits[best])
    absent = tuple(int(c) for c in sorted(set(range(num_classes)) - set(present.tolist())))
    return weight, bias, ProbeResult("logistic", best, losses[best], losses, absent)


def _class_rows(coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, num_classes: int):
    """One logit row per class: a binary fit's w becomes (-w/2, +w/2), so the logits' difference is w.x + b."""
    if len(classes) == 2:
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    weight = np.zeros((num_classes, coef.shape[1]))
    bias = np.full(num_classes, float(intercept.min()) - ABSENT_CLASS_OFFSET)
    weight[classes.astype(int)] = coef
    bias[classes.astype(int)] = intercept
    return weight, bias


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    from scipy.special import log_softmax

    return float(-np.mean(log_softmax(logits, axis=1)[np.arange(len(labels)), labels.astype(int)]))


def _best(losses: dict[float, float]) -> float:
    # Strengths ascending: min() keeps the first (weakest) of equal losses; NaN (a diverged fit) never wins.
    finite = {s: v for s, v in losses.items() if math.isfinite(v)}
    if not finite:
        raise ProbeError("every regularisation strength gave a non-finite selection loss: check the features")
    return min(sorted(finite), key=lambda s: finite[s])


def _fold(scaler, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights on standardised features -> weights on raw features (x_std = (x - mean) / scale)."""
    raw = weight / scaler.scale_
    return raw, bias - raw @ scaler.mean_


def write_head(linear: nn.Linear, weight: np.ndarray, bias: np.ndarray) -> None:
    """Copy a solution into the head's linear layer (same shapes, its dtype and device)."""
    if tuple(linear.weight.shape) != weight.shape:
        raise ProbeError(f"probe solution {weight.shape} does not fit the head {tuple(linear.weight.shape)}")
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))


__all__ = [
    "DEFAULT_STRENGTHS", "ProbeError", "ProbeResult", "head_inputs", "linear_head", "solve_logistic", "solve_ridge",
    "write_head",
]
