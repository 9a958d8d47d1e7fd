"""Where the attention, feed-forward and LayerNorm parameters of an encoder are, found by structure.

Module-wise strategies need to know, for each transformer layer, which linear maps belong to self-attention,
which two form the feed-forward block, and which LayerNorm follows which sub-block. Parameter names differ
between families (BERT ``attention.self.query``, DeBERTa-v2 ``query_proj``, DistilBERT ``q_lin``, ``ffn.lin1``,
``sa_layer_norm``...), so :func:`find_roles` reads the module tree instead:

* the transformer layers are the largest ``nn.ModuleList`` of identical blocks inside the backbone;
* in a layer, the feed-forward block is the first ``nn.Linear`` that leaves the hidden size (the
  up-projection) and the next one that maps back to it (the down-projection);
* every other ``nn.Linear`` registered before the up-projection belongs to attention (query, key, value,
  output, and DeBERTa-v2's position projections);
* normalisation modules registered before the up-projection are attention-side (BERT
  ``attention.output.LayerNorm``, DistilBERT ``sa_layer_norm``), the ones after it FFN-side.

Registration order is the order in which the post-LN encoders of the BERT, RoBERTa, DeBERTa-v2, ELECTRA and
DistilBERT families build (and run) their sub-blocks; the tests check all five.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from pet_lightning.strategies.base import StrategyError, backbone_of, unwrap


def is_norm(module: nn.Module) -> bool:
    """LayerNorm and look-alikes (custom ``*LayerNorm`` / ``*RMSNorm`` classes)."""
    return isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()


@dataclass(frozen=True)
class LayerRoles:
    """Module names (relative to the Hugging Face model) of one transformer layer, by role.

    Attributes:
        index: Position of the layer in the stack (0 = closest to the embeddings).
        prefix: Name of the layer module, e.g. ``bert.encoder.layer.3``.
        attention: Linear maps of self-attention (query, key, value, output...).
        ffn: The feed-forward block's up- and down-projection.
        attention_norms: Normalisation modules of the attention sub-block.
        ffn_norms: Normalisation modules of the feed-forward sub-block.
    """

    index: int
    prefix: str
    attention: tuple[str, ...]
    ffn: tuple[str, ...]
    attention_norms: tuple[str, ...]
    ffn_norms: tuple[str, ...]


@dataclass(frozen=True)
class ModelRoles:
    """Roles of a whole encoder.

    Attributes:
        model_class: Class name of the model (for error messages).
        layers: One :class:`LayerRoles` per transformer layer, bottom to top.
        outer_norms: Normalisation modules of the backbone outside the layers (the embedding LayerNorm;
            DeBERTa-v2's relative-position LayerNorm).
    """

    model_class: str
    layers: tuple[LayerRoles, ...]
    outer_norms: tuple[str, ...]

    def pick(self, layers: Sequence[int] | None, strategy: str) -> list[LayerRoles]:
        """The chosen layers (all when ``layers`` is None); indices are 0-based, negative ones count from the top."""
        if layers is None:
            return list(self.layers)
        count = len(self.layers)
        chosen = []
        for index in layers:
            if not -count <= index < count:
                raise StrategyError(
                    f"strategy {strategy!r}: layer index {index} is out of range for {self.model_class}, which has "
                    f"{count} layers: use 0..{count - 1} (or -{count}..-1 from the top)"
                )
            chosen.append(self.layers[index % count])
        return list({layer.index: layer for layer in chosen}.values())


def find_roles(model: nn.Module) -> ModelRoles:
    """Roles of the encoder of a Hugging Face task model (or a wrapper around one)."""
    hf = unwrap(model)
    backbone = backbone_of(hf)
    backbone_name = _module_name(hf, backbone)
    stack_name, stack = _layer_stack(backbone, type(hf).__name__)
    stack_prefix = _join(backbone_name, stack_name)
    layers = tuple(
        _layer_roles(index, _join(stack_prefix, str(index)), layer, type(hf).__name__)
        for index, layer in enumerate(stack)
    )
    outer_norms = tuple(
        _join(backbone_name, name)
        for name, module in backbone.named_modules()
        if is_norm(module) and not _inside(name, stack_name)
    )
    return ModelRoles(model_class=type(hf).__name__, layers=layers, outer_norms=outer_norms)


def parameter_names(model: nn.Module, modules: Iterable[str], only: str | None = None) -> list[str]:
    """Names of the parameters of the given modules (recursively); ``only="bias"`` keeps one kind."""
    hf = unwrap(model)
    found = dict(hf.named_modules())
    names = []
    for module_name in modules:
        for param_name, _ in found[module_name].named_parameters():
            if only is None or param_name.rsplit(".", 1)[-1] == only:
                names.append(_join(module_name, param_name))
    return names


def _layer_stack(backbone: nn.Module, model_class: str) -> tuple[str, nn.ModuleList]:
    candidates = [
        (name, module)
        for name, module in backbone.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len({type(child) for child in module}) == 1
    ]
    if not candidates:
        raise StrategyError(f"{model_class} has no stack of transformer layers (an nn.ModuleList of identical blocks)")
    return max(candidates, key=lambda item: sum(p.numel() for p in item[1].parameters()))


def _layer_roles(index: int, prefix: str, layer: nn.Module, model_class: str) -> LayerRoles:
    modules = list(layer.named_modules())
    linears = [(name, m) for name, m in modules if isinstance(m, nn.Linear)]
    norms = [name for name, m in modules if is_norm(m) and name]
    hidden = _hidden_size(layer, linears)
    position = {name: i for i, (name, _) in enumerate(modules)}
    up = next(((name, m) for name, m in linears if m.in_features == hidden and m.out_features != hidden), None)
    down = None
    if up is not None:
        width = up[1].out_features
        after = [(name, m) for name, m in linears if position[name] > position[up[0]]]
        down = next(((n, m) for n, m in after if m.in_features == width and m.out_features == hidden), None)
    if up is None or down is None:
        raise StrategyError(
            f"cannot find the feed-forward block (hidden {hidden} -> larger -> {hidden}) in layer {index} of "
            f"{model_class}: this architecture is not supported by the module-wise strategies"
        )
    start = position[up[0]]
    attention = [name for name, _ in linears if position[name] < start]
    if not attention:
        raise StrategyError(f"cannot find the attention linear maps in layer {index} of {model_class}")
    return LayerRoles(
        index=index,
        prefix=prefix,
        attention=tuple(_join(prefix, name) for name in attention),
        ffn=(_join(prefix, up[0]), _join(prefix, down[0])),
        attention_norms=tuple(_join(prefix, name) for name in norms if position[name] < start),
        ffn_norms=tuple(_join(prefix, name) for name in norms if position[name] > start),
    )


def _hidden_size(layer: nn.Module, linears: list[tuple[str, nn.Linear]]) -> int:
    """The residual stream's width: the last normalisation's size, else the most common linear input size."""
    shapes = [getattr(m, "normalized_shape", None) for m in layer.modules() if is_norm(m)]
    shapes = [s for s in shapes if s]
    if shapes:
        return int(shapes[-1][-1])
    sizes = [m.in_features for _, m in linears]
    return max(set(sizes), key=sizes.count) if sizes else -1


def _module_name(root: nn.Module, target: nn.Module) -> str:
    for name, module in root.named_modules():
        if module is target:
            return name
    raise StrategyError(f"{type(target).__name__} is not part of {type(root).__name__}")


def _inside(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def check_layers(layers: Sequence[int] | None, strategy: str) -> list[int] | None:
    """Validate a ``layers`` setting (None = every layer); returns it as a list of ints."""
    if layers is None:
        return None
    if isinstance(layers, (int, str)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        raise StrategyError(
            f"strategy {strategy!r}: layers={layers!r} must be a list of layer indices, e.g. [0] or [10, 11]"
        )
    if not layers:
        raise StrategyError(f"strategy {strategy!r}: layers=[] selects nothing: give layer indices, or None for all")
    return list(layers)
