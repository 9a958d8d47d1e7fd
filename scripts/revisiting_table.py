"""Short real runs of the injected methods on RTE and MRPC for a side-by-side table.

    python -m scripts.revisiting_table --train-subset 500 --epochs 1

Each row runs ``configs/revisiting/<task>_<method>.yaml`` for the given epochs on a fixed training subset,
selecting and reporting on the official dev set (protocol ``standard``, leaky: this table compares costs, not
methods), and prints the method, trainable parameters, %, dev metric, training samples/s and checkpoint bytes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from pet_lightning.lightning_cli import fit_summary
from scripts import best_headline


def run_one(task: str, method: str, args: argparse.Namespace, root: Path) -> dict[str, str]:
    overrides = [f"--trainer.max_epochs={args.epochs}", f"--data.init_args.train_subset={args.train_subset}",
                 "--data.init_args.protocol=standard"]
    return fit_summary(f"configs/revisiting/{task}_{method}.yaml", overrides, root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["rte", "mrpc"])
    parser.add_argument("--methods", nargs="+",
                        default=["full", "adapter", "prefix", "lora", "bitfit", "ia3", "prompt"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    print("| task | method | trainable | % | dev metric | train samples/s | checkpoint |")
    print("|---|---|---:|---:|---|---:|---:|")
    for task in args.tasks:
        for method in args.methods:
            with tempfile.TemporaryDirectory() as folder:
                row = run_one(task, method, args, Path(folder))
            metric, value = best_headline(row)
            print(f"| {task} | {method} | {int(row['trainable']):,} | {float(row['trainable_pct']):.3f} | "
                  f"{metric} {value:.4f} | {row['train_samples_per_s']} | "
                  f"{int(row['ckpt_bytes']) / 1e6:.2f} MB |", flush=True)


if __name__ == "__main__":
    main()
