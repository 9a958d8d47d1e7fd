"""Does padding batches to a multiple of 8 pay on this machine? An interleaved A/B of one training step.

``data.init_args.pad_to_multiple_of: 8`` pads each batch's length up to a multiple of 8, the shapes tensor cores
want under fp16/bf16 on a GPU. On a CPU the only effect should be the extra tokens. This script times a forward and
backward pass of the packaged MiniLM (sequence classification, batch 16) at batch lengths that are not multiples of
8 (side a) and at the same lengths padded up (side b), alternating a and b block by block so that load drifts hit
both sides alike, and prints per length the median step times and the ratio b / a with its 95% interval over blocks
(:func:`benchmarks.intervals.ratio_interval`), beside the token ratio that padding alone would predict.

    python -m benchmarks.padding                       # lengths 121 125 127, 8 blocks of 3 steps, bf16 autocast
    python -m benchmarks.padding --lengths 60 121 --blocks 12 --precision 32-true --accelerator cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import autocast, quiet_libraries, table
from benchmarks.intervals import ratio_interval
from benchmarks.timing import sync

BATCH = 16


def padded(length: int, multiple: int = 8) -> int:
    """``length`` rounded up to ``multiple``."""
    return -(-length // multiple) * multiple


def step_seconds(model: torch.nn.Module, length: int, steps: int, accelerator: str, precision: str) -> float:
    """Median seconds of ``steps`` forward + backward passes on a random batch of ``length`` tokens."""
    device = torch.device(accelerator)
    generator = torch.Generator().manual_seed(length)
    inputs = torch.randint(1000, 20000, (BATCH, length), generator=generator).to(device)
    mask = torch.ones_like(inputs)
    labels = torch.randint(0, 2, (BATCH,), generator=generator).to(device)
    times = []
    for _ in range(steps):
        sync(accelerator)
        start = time.perf_counter()
        with autocast(accelerator, precision):
            loss = model(input_ids=inputs, attention_mask=mask, labels=labels).loss
        loss.backward()
        sync(accelerator)
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return statistics.median(times)


def add_step_options(parser: argparse.ArgumentParser, blocks: int) -> None:
    """The options every interleaved step A/B here takes: blocks, steps per block, precision, device."""
    parser.add_argument("--blocks", type=int, default=blocks, help="A/B block pairs per length")
    parser.add_argument("--block-steps", type=int, default=3, help="timed steps per block (the median is kept)")
    parser.add_argument("--precision", default="bf16-mixed", choices=["bf16-mixed", "16-mixed", "32-true"])
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[121, 125, 127])
    add_step_options(parser, blocks=8)
    args = parser.parse_args(argv)
    if any(length % 8 == 0 for length in args.lengths):
        parser.error("--lengths: give lengths that are not multiples of 8 (side b pads them up)")
    quiet_libraries()
    from transformers import AutoModelForSequenceClassification

    from pet_lightning.backbones import resolve_backbone

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_backbone("minilm"), num_labels=2)
    model.to(args.accelerator).train()
    step_seconds(model, max(args.lengths), 2, args.accelerator, args.precision)  # warm-up: allocator, kernels
    rows = []
    for length in args.lengths:
        a_times, b_times, ratios = [], [], []
        for _ in range(args.blocks):
            a = step_seconds(model, length, args.block_steps, args.accelerator, args.precision)
            b = step_seconds(model, padded(length), args.block_steps, args.accelerator, args.precision)
            a_times.append(a)
            b_times.append(b)
            ratios.append(b / a)
        interval = ratio_interval(ratios)
        rows.append([length, padded(length), f"{statistics.median(a_times) * 1e3:.1f}",
                     f"{statistics.median(b_times) * 1e3:.1f}", str(interval), f"{padded(length) / length:.3f}x"])
    print(f"MiniLM, batch {BATCH}, {args.precision} on {args.accelerator}, {torch.get_num_threads()} threads; "
          f"{args.blocks} a/b block pairs of {args.block_steps} steps")
    print(table(["length a", "length b (padded)", "step a ms", "step b ms", "b / a [95% CI]", "tokens b / a"],
                rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
