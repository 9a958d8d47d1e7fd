"""One run per Table 1 row of the transferability study: strategy, % params, dev metric, wall time, checkpoint size.

Each row's strategy and learning rate come from ``configs/transferability/<row>.yaml``; every row shares the
epochs, batch size, sequence length, training subset and seed given here, so only the strategy (and its
learning rate) differs. The checkpoint written by ``trainer.save_checkpoint`` after training is measured, then
reloaded into a fresh module and validated again to check that it reproduces the dev metric exactly.

    PET_DATA_DIR=/path/to/data python -m scripts.transferability_table --tasks rte mrpc \\
        --epochs 1 --train-subset 1000 --max-length 128 --out runs/transferability_table
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import lightning as L
import yaml

from pet_lightning import GlueDataModule, PETModule

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "transferability"
ROWS = {
    "Full-FT": "full_ft",
    "Feed-Forward": "feed_forward",
    "Multi-Head": "multi_head",
    "LayerNorms": "layernorms",
    "LayerNorms_A": "layernorms_a",
    "LayerNorms_F": "layernorms_f",
    "BitFit": "bitfit",
    "Random": "random",
    "Frozen": "frozen",
}


def row_settings(config: str) -> dict:
    model = yaml.safe_load((CONFIG_DIR / f"{config}.yaml").read_text())["model"]
    return {"strategy": model["strategy"], "learning_rate": float(model["learning_rate"])}


def _trainer(args: argparse.Namespace, root: Path) -> L.Trainer:
    return L.Trainer(
        accelerator=args.accelerator, devices=1, precision=args.precision, max_epochs=args.epochs, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=root,
    )


def run_row(args: argparse.Namespace, task: str, row: str, config: str) -> dict:
    settings = row_settings(config)
    root = Path(args.out) / task / config
    root.mkdir(parents=True, exist_ok=True)
    L.seed_everything(args.seed, verbose=False)
    data = GlueDataModule(task=task, data_dir=args.data_dir, max_length=args.max_length, batch_size=args.batch_size,
                          train_subset=args.train_subset or None, order_seed=args.seed)
    module = PETModule(backbone=args.backbone, task=task, init_seed=args.seed, warmup_ratio=0.06, **settings)
    trainer = _trainer(args, root)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    wall = time.perf_counter() - start
    headline = module.spec.headline
    metric = float(trainer.callback_metrics[f"val/{headline}"])
    ckpt = root / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    # A fresh module from the checkpoint alone must give the same dev metric.
    reloaded = PETModule.load_from_checkpoint(ckpt)
    again = _trainer(args, root).validate(reloaded, datamodule=data, verbose=False)[0][f"val/{headline}"]
    return {
        "task": task, "row": row, "strategy": module.strategy.config_dict(), "lr": settings["learning_rate"],
        "trainable": module.report.trainable, "total": module.report.total, "percent": module.report.percent,
        "headline": headline, "dev": metric, "dev_after_reload": float(again), "wall_s": wall,
        "ckpt_bytes": ckpt.stat().st_size, "train_steps": int(trainer.global_step),
    }


def markdown(results: list[dict]) -> str:
    lines = ["| task | row | strategy | % params | dev metric | reload equal | wall s | ckpt |",
             "|---|---|---|---:|---:|---|---:|---:|"]
    for r in results:
        size = r["ckpt_bytes"]
        human = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"
        lines.append(
            f"| {r['task']} | {r['row']} | {r['strategy']} | {r['percent']:.2f} | {r['headline']} "
            f"{100 * r['dev']:.2f} | {r['dev'] == r['dev_after_reload']} | {r['wall_s']:.0f} | {human} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["rte", "mrpc"])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--data-dir", default=os.environ.get("PET_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=1000, help="0 = the whole training set")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--accelerator", default="auto", help="cpu, cuda, ... (auto: a GPU when there is one)")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--out", default="runs/transferability_table")
    args = parser.parse_args()
    results = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        for row in args.rows:
            results.append(run_row(args, task, row, ROWS[row]))
            print(json.dumps(results[-1]), flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))
    table = markdown(results)
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
