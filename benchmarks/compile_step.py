"""Does ``model.compile: true`` pay on this machine? An interleaved A/B of one training step, eager against compiled.

``PETModule(compile=True)`` compiles the model in place with ``torch.compile(dynamic=True)`` at fit start
(:mod:`pet_lightning.device`). This script builds the packaged MiniLM twice from the same weights, compiles one the
same way, pays the compile on a warm-up of every length, then times forward + backward passes at varying batch
lengths (as padded batches vary), alternating eager and compiled blocks, and prints the median step times, the ratio
compiled / eager with its 95% interval over blocks, and the one-off compile time.

    python -m benchmarks.compile_step                         # lengths 64 96 128, 6 blocks of 3 steps, bf16 autocast
    python -m benchmarks.compile_step --accelerator cuda --precision 16-mixed
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import quiet_libraries, table
from benchmarks.intervals import ratio_interval
from benchmarks.padding import BATCH, add_step_options, step_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 96, 128])
    add_step_options(parser, blocks=6)
    args = parser.parse_args(argv)
    quiet_libraries()
    from transformers import AutoModelForSequenceClassification

    from pet_lightning.backbones import resolve_backbone

    models = []
    for _ in range(2):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(resolve_backbone("minilm"), num_labels=2)
        models.append(model.to(args.accelerator).train())
    eager, compiled = models
    compiled.compile(dynamic=True)
    start = time.perf_counter()
    for length in args.lengths:  # compiles (and re-specialises) on first sight of each shape
        step_seconds(compiled, length, 1, args.accelerator, args.precision)
    compile_s = time.perf_counter() - start
    step_seconds(eager, max(args.lengths), 2, args.accelerator, args.precision)
    rows = []
    for length in args.lengths:
        eager_times, compiled_times, ratios = [], [], []
        for _ in range(args.blocks):
            a = step_seconds(eager, length, args.block_steps, args.accelerator, args.precision)
            b = step_seconds(compiled, length, args.block_steps, args.accelerator, args.precision)
            eager_times.append(a)
            compiled_times.append(b)
            ratios.append(b / a)
        rows.append([length, f"{statistics.median(eager_times) * 1e3:.1f}",
                     f"{statistics.median(compiled_times) * 1e3:.1f}", str(ratio_interval(ratios))])
    print(f"MiniLM, batch {BATCH}, {args.precision} on {args.accelerator}, {torch.get_num_threads()} threads; "
          f"{args.blocks} eager/compiled block pairs of {args.block_steps} steps; compile + first steps "
          f"{compile_s:.1f} s")
    print(table(["length", "eager step ms", "compiled step ms", "compiled / eager [95% CI]"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
