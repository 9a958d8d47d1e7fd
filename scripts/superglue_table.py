"""Short real runs of every SuperGLUE task in the shared data, next to the majority-class baseline.

    python -m scripts.superglue_table --epochs 2 --train-subset 1000

Each row runs ``configs/superglue/<task>_<strategy>.yaml`` (full fine-tuning and BitFit) for a few epochs on a
fixed training subset with the config's own protocol (BoolQ: ``train_holdout``, the others ``standard``) and
prints the formulation, the training rows, the best selection-split headline metric of the run and what
predicting the training set's most frequent label scores on that split (the same metric objects).

SuperGLUE's RTE jsonl is not in the shared data, but GLUE's RTE tsv holds the same examples: the ``rte`` rows
write them in the SuperGLUE jsonl layout into a temporary root (:func:`tests.helpers.superglue_rte.write_rte_jsonl`)
so the jsonl reader and formulation run on real rows. ReCoRD is not in the shared data and has no row.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from pathlib import Path

import torch
from omegaconf import OmegaConf

from pet_lightning.data import SuperGlueDataModule
from pet_lightning.data.readers import default_data_dir
from pet_lightning.lightning_cli import fit_summary
from pet_lightning.metrics import build_metrics
from scripts import best_headline
from tests.helpers.superglue_rte import write_rte_jsonl

TASKS = ["boolq", "cb", "copa", "multirc", "wic", "wsc", "rte"]


def data_module(config: str, data_dir: str, train_subset: int) -> SuperGlueDataModule:
    """The config's data module (task, protocol, lengths), built directly to inspect its split plan."""
    init_args = OmegaConf.to_container(OmegaConf.load(config).data.init_args)
    init_args.update(data_dir=data_dir, train_subset=train_subset)
    module = SuperGlueDataModule(**init_args)
    module.setup("fit")
    return module


def majority_baseline(module: SuperGlueDataModule) -> float:
    """Headline score on the selection split of always predicting the most frequent training label."""
    plan = module.plan
    majority = Counter(example["label"] for example in plan.train).most_common(1)[0][0]
    examples = next(iter(plan.selection.values()))  # the split whose headline selects (and SUMMARY reports)
    metrics = build_metrics(module.spec)
    targets = torch.tensor([example["label"] for example in examples])
    extras = {"group": torch.tensor([example["group"] for example in examples])} if "group" in examples[0] else {}
    metrics.update(torch.full_like(targets, majority), targets, **extras)
    return float(metrics.compute()[module.spec.headline])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--strategies", nargs="+", default=["full", "bitfit"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-subset", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    shared_root = default_data_dir()
    if shared_root is None:
        parser.error("set PET_DATA_DIR to the data root (glue/ and superglue/ in the official layouts)")
    print("| task | formulation | train rows (used) | strategy | val metric after the run | majority baseline |")
    print("|---|---|---:|---|---|---:|")
    with tempfile.TemporaryDirectory() as rte_root:
        for task in args.tasks:
            data_dir = shared_root
            if task == "rte":
                write_rte_jsonl(Path(shared_root), Path(rte_root))
                data_dir = rte_root
            for strategy in args.strategies:
                config = f"configs/superglue/{task}_{strategy}.yaml"
                module = data_module(config, data_dir, args.train_subset)
                # Rows the protocol trains on before the subset (BoolQ: carved out of val).
                available = len(data_module(config, data_dir, None).plan.train)
                baseline = majority_baseline(module)
                with tempfile.TemporaryDirectory() as folder:
                    row = fit_summary(config, [f"--trainer.max_epochs={args.epochs}",
                                              f"--data.init_args.train_subset={args.train_subset}",
                                              f"--data.init_args.data_dir={data_dir}"], Path(folder))
                metric, value = best_headline(row)
                print(f"| {task} | {module.spec.formulation} | {available:,} ({len(module.plan.train):,}) | "
                      f"{strategy} | {metric} {value:.4f} | {baseline:.4f} |", flush=True)


if __name__ == "__main__":
    main()
