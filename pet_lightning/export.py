"""Export a tuned model to a folder that other tools load, and import it back.

What a folder holds depends on the strategy (``pet_lightning.json`` records which, plus backbone, task and
strategy, so :func:`load_exported` can rebuild the :class:`~pet_lightning.module.PETModule`):

* peft methods (``lora``, ``dora``, ``vera``, ``adalora``, ``ia3``, ``prefix``, ``prompt`` and ``peft`` with any
  config): the folder of ``PeftModel.save_pretrained``, head included (peft ``modules_to_save``). Plain peft
  loads it::

      base = AutoModelForSequenceClassification.from_pretrained(backbone_dir, num_labels=2)
      model = PeftModel.from_pretrained(base, folder)

  LoRA trained from a PiSSA or OLoRA initialisation is converted by peft to a plain LoRA adapter of twice the
  rank that applies to the pretrained weights (``pet_lightning.json`` keeps the original strategy as
  ``converted_from``). AdaLoRA folders hold only the ranks it kept (``rank_pattern``).
  ``merge=True`` (LoRA, DoRA, VeRA, AdaLoRA, IA3) writes instead a plain Hugging Face model with the update merged
  into the weights (``merge_and_unload``) and the tokenizer:
  ``AutoModelForSequenceClassification.from_pretrained(folder)``.
  On multiple-choice models, prefix and prompt tuning wrap the encoder: the folder holds the encoder's peft
  files and the head in ``head.safetensors``.
* every other strategy (``adapter``, ``bitfit``, ``full``...): ``trainable.safetensors`` with every tensor that
  trains (Hugging Face parameter names, e.g. ``bert.encoder.layer.0.output.dense.adapter.down.weight`` and
  ``classifier.weight``) and ``strategy.json`` with the strategy's settings. For ``adapter`` the settings are
  ``style``, ``reduction_factor``, ``activation`` and ``init_std``; each adapter holds ``down.weight``
  ``[d / reduction_factor, d]``, ``down.bias``, ``up.weight`` ``[d, d / reduction_factor]``, ``up.bias`` and
  sits after the projection named by its prefix. Load them onto the backbone with the same strategy applied.

``pet_lightning.json`` also records the module's head and pooler (``module``: ``head``, ``head_hidden_size``,
``head_init_std``, ``pooler``, ``hidden_dropout``, ``init_seed``), which :func:`load_exported` restores, so the
reloaded module computes the trained module's logits for every strategy, head and pooler. Plain transformers / peft
run the Hugging Face forward only: with ``pooler='first_token'`` or ``'mean'`` (the head reads the first token or
the token mean, not the pooler), ``head='mlp'`` or a strategy that injects its own modules (``adapter``), they would
compute other logits. Such a
module is exported for :func:`load_exported` only (``"plain": false`` and the reason in ``pet_lightning.json``; peft
files go to the ``peft/`` sub-folder, where plain peft does not find them by mistake), and ``merge=True`` or
``plain=True``, which promise a folder plain tools load, refuse it with one line saying why.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

from peft import LoraConfig
from safetensors.torch import load_file, save_file
from torch import nn

from pet_lightning.backbones import load_tokenizer
from pet_lightning.errors import PetLightningError
from pet_lightning.module import PETModule
from pet_lightning.strategies import build_strategy
from pet_lightning.strategies.base import unwrap
from pet_lightning.strategies.peft_strategy import PeftStrategy

EXPORT_FORMAT = 1
INFO_FILE = "pet_lightning.json"
TENSORS_FILE = "trainable.safetensors"
STRATEGY_FILE = "strategy.json"
HEAD_FILE = "head.safetensors"
PEFT_SUBFOLDER = "peft"
# PETModule settings an export records and load_exported restores (absent in older exports: the defaults then).
MODULE_SETTINGS = ("head", "head_hidden_size", "head_init_std", "pooler", "hidden_dropout", "init_seed")
# Those the exported tensors' names and shapes depend on: a load_exported argument may not change them.
ARCHITECTURE_SETTINGS = ("head", "head_hidden_size", "pooler")


class ExportError(PetLightningError):
    """A folder cannot be written or read as an export; the message says what to do."""


def plain_problem(module: PETModule) -> str | None:
    """Why plain transformers / peft, which run the Hugging Face model's own forward, would compute other logits
    than ``module``; None when they compute the same."""
    hf = unwrap(module.model)
    kind = type(hf).__name__
    pooler = module.hparams.get("pooler", "pretrained")
    if pooler != "pretrained":
        fed = {"first_token": "the first token's hidden state", "mean": "the mean of the token states"}[pooler]
        return f"pooler={pooler!r} feeds the head {fed}, but a plain {kind} runs its pooler"
    if module.hparams.get("head", "hf") == "mlp":
        return f"head='mlp' (Linear-ReLU-Linear) is not the classifier a plain {kind} has"
    from peft import PeftModel

    # peft's own wrappers (and ours around the encoder, a PeftModel) are plain peft; anything else of ours is not.
    injected = sorted({type(m).__name__ for m in hf.modules()
                       if type(m).__module__.startswith("pet_lightning.") and not isinstance(m, PeftModel)})
    if injected:
        return f"strategy {module.strategy.name!r} adds modules plain transformers lacks ({', '.join(injected)})"
    return None


def export(module: PETModule, folder: str | Path, *, merge: bool = False, plain: bool = False) -> Path:
    """Write ``module``'s method and head to ``folder`` (see the module docstring for the layout).

    ``merge=True`` writes a plain transformers model (peft methods with tuner layers); ``plain=True`` asks for a
    folder that plain transformers / peft load with the same logits, and refuses a module they cannot represent.
    """
    problem = plain_problem(module)
    if merge and problem:
        raise ExportError(f"merge=True writes a plain transformers model, which cannot represent this module: "
                          f"{problem}; export without merge (load_exported restores it exactly)")
    if plain and problem:
        raise ExportError(f"plain=True: plain transformers / peft cannot represent this module: {problem}; export "
                          "without plain and load the folder with pet_lightning.export.load_exported")
    strategy = module.strategy
    if merge and (not isinstance(strategy, PeftStrategy) or strategy.is_prompt_learning):
        raise ExportError(
            f"merge=True needs lora or ia3 (or another peft method with tuner layers: dora, vera, adalora), not "
            f"{strategy.name!r}: export without merge"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "backbone": module.backbone_name,
        "task": module.spec.name,
        "strategy": strategy.config_dict(),
        "module": {key: module.hparams.get(key) for key in MODULE_SETTINGS if key in module.hparams},
        "plain": problem is None,
        "report": module.report.as_dict(),
    }
    if problem:
        info["not_plain"] = problem
    # A module plain peft cannot represent keeps its peft files out of the folder's top level, where
    # PeftModel.from_pretrained would load them without a word and compute other logits.
    peft_folder = folder / PEFT_SUBFOLDER if problem else folder
    if merge:
        merged = copy.deepcopy(module.model).merge_and_unload()
        merged.save_pretrained(folder)
        load_tokenizer(module.backbone_name).save_pretrained(folder)
        info["layout"] = "merged"
    elif isinstance(strategy, PeftStrategy) and module.model is not unwrap(module.model):
        if _save_peft(module, peft_folder):
            info["converted_from"] = info["strategy"]
            converted = LoraConfig.from_pretrained(str(peft_folder))
            info["strategy"] = build_strategy("peft", config=converted).config_dict()
        info["layout"] = "peft"
    elif isinstance(strategy, PeftStrategy):
        hf = module.model
        getattr(hf, hf.base_model_prefix).save_pretrained(peft_folder)
        save_file(_contiguous(_head_state(hf)), folder / HEAD_FILE)
        info["layout"] = "peft_encoder"
    else:
        trainable = set(module.report.trainable_names)
        tensors = {name: p.detach().cpu() for name, p in module.model.named_parameters() if name in trainable}
        metadata = {"strategy": json.dumps(strategy.config_dict())}
        save_file(_contiguous(tensors), folder / TENSORS_FILE, metadata=metadata)
        (folder / STRATEGY_FILE).write_text(json.dumps(strategy.config_dict(), indent=2) + "\n")
        info["layout"] = "tensors"
    if problem and info["layout"] != "tensors":
        info["peft_folder"] = PEFT_SUBFOLDER
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return folder


def load_exported(folder: str | Path, **module_kwargs: Any) -> PETModule:
    """Rebuild the :class:`PETModule` an :func:`export` folder came from, to evaluate or continue training.

    ``module_kwargs`` go to :class:`PETModule` (learning rates...); the head and pooler come from the folder. A
    merged LoRA folder becomes the backbone itself, tuned further with ``strategy`` from ``module_kwargs`` (default
    ``full``). A prefix exported with ``projection`` holds only the final prefixes, so it comes back as a prefix
    without projection.
    """
    folder = Path(folder)
    info_path = folder / INFO_FILE
    if not info_path.is_file():
        raise ExportError(f"{folder} has no {INFO_FILE}: pass a folder written by pet_lightning.export.export")
    info = json.loads(info_path.read_text())
    if info.get("format") != EXPORT_FORMAT:
        raise ExportError(
            f"{folder} has export format {info.get('format')}, not {EXPORT_FORMAT}: upgrade pet_lightning"
        )
    recorded = dict(info.get("module", {}))
    for key in ARCHITECTURE_SETTINGS:
        if key in module_kwargs and key in recorded and module_kwargs[key] != recorded[key]:
            raise ExportError(f"{folder} was exported with {key}={recorded[key]!r}, its tensors fit only that: drop "
                              f"{key}={module_kwargs[key]!r} from load_exported's arguments")
    module_kwargs = {**recorded, **module_kwargs}
    layout = info["layout"]
    if layout == "merged":
        module_kwargs.setdefault("strategy", "full")
        return PETModule(backbone=str(folder), task=info["task"], **module_kwargs)
    strategy = dict(info["strategy"])
    if strategy["name"] == "prefix" and strategy.get("projection"):
        strategy["projection"] = False
    module = PETModule(
        backbone=info["backbone"], task=info["task"], strategy=build_strategy(strategy), **module_kwargs
    )
    if layout in ("peft", "peft_encoder"):
        _load_peft(module, folder, layout, folder / info.get("peft_folder", "."))
    else:
        tensors = load_file(folder / TENSORS_FILE)
        # A random mask drawn without init_seed is drawn anew here: every tensor the file holds is still restored
        # (the same logits); only the tensors that go on training may differ.
        expected = set() if module.report.masks else set(module.report.trainable_names)
        _load_named(module.model, tensors, expected, folder)
    module.freeze_to_strategy()
    return module


def _save_peft(module: PETModule, folder: Path) -> bool:
    """``save_pretrained``; True when PiSSA / OLoRA weights were converted to a plain LoRA adapter.

    PiSSA and OLoRA train on residual weights (the pretrained ones minus the initial adapter), so their adapter
    alone does not apply to the pretrained model. peft converts it, given the initial adapter, to a LoRA of twice
    the rank that does; the initial adapter is deterministic, rebuilt here from the strategy.
    """
    init = getattr(module.model.active_peft_config, "init_lora_weights", True)
    if not (isinstance(init, str) and (init.startswith("pissa") or init == "olora")):
        module.model.save_pretrained(folder)
        return False
    from peft import get_peft_model_state_dict

    head = {k: v for k, v in get_peft_model_state_dict(module.model).items() if ".lora_" not in k}
    with tempfile.TemporaryDirectory() as initial:
        settings = {key: module.hparams[key] for key in MODULE_SETTINGS if key in module.hparams}
        fresh = PETModule(backbone=module.backbone_name, task=module.spec.name, strategy=module.strategy.config_dict(),
                          **settings)
        fresh.model.save_pretrained(initial)
        module.model.save_pretrained(folder, path_initial_model_for_weight_conversion=initial)
    # peft's conversion writes only the LoRA tensors: put the head (modules_to_save) back.
    weights = folder / "adapter_model.safetensors"
    save_file({**load_file(weights), **_contiguous(head)}, weights, metadata={"format": "pt"})
    return True


def _load_peft(module: PETModule, folder: Path, layout: str, peft_folder: Path) -> None:
    from peft import load_peft_weights, set_peft_model_state_dict

    target = module.model
    if layout == "peft_encoder":
        target = getattr(module.model, module.model.base_model_prefix)
        _load_named(module.model, load_file(folder / HEAD_FILE), set(_head_state(module.model)), folder)
    rank_pattern = json.loads((peft_folder / "adapter_config.json").read_text()).get("rank_pattern")
    if rank_pattern:
        # AdaLoRA saved only the ranks it kept: shrink the fresh layers to that pattern before loading.
        target.peft_config[target.active_adapter].rank_pattern = rank_pattern
    try:
        result = set_peft_model_state_dict(target, load_peft_weights(str(peft_folder)))
    except (KeyError, RuntimeError) as err:
        # peft raises a bare KeyError / size mismatch when the folder's tensors belong to another head or method.
        raise ExportError(f"{folder} holds peft tensors this model does not fit ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:120]}): re-export it with this version") from None
    missing = [key for key in result.missing_keys if any(k in key for k in ("lora_", "ia3_", "modules_to_save"))]
    if missing:
        raise ExportError(f"{folder} lacks {len(missing)} tensors of the method (e.g. {missing[0]}): re-export it")


def _load_named(model: nn.Module, tensors: dict, expected: set[str], folder: Path) -> None:
    missing = sorted(expected - set(tensors))
    if missing:
        raise ExportError(f"{folder} lacks {len(missing)} trainable tensors (e.g. {missing[0]}): it was written for "
                          "another strategy, head, pooler or backbone")
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise ExportError(f"{folder} holds tensors this model does not have (e.g. {result.unexpected_keys[0]})")


def _head_state(hf: nn.Module) -> dict:
    from pet_lightning.strategies.base import head_parameters

    return {name: p.detach().cpu() for name, p in head_parameters(hf).items()}


def _contiguous(tensors: dict) -> dict:
    return {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
