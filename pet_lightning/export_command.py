"""``python cli.py export CHECKPOINT FOLDER [--merge] [--plain]``: a Lightning checkpoint to an export folder.

The folder is :func:`pet_lightning.export.export`'s (see that module for its layout); ``--merge`` and ``--plain``
are its ``merge`` and ``plain``. Errors print as one ``error:`` line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cli.py export", description="Export a PETModule checkpoint to a folder that load_exported (and, where "
        "the module allows it, plain transformers / peft) loads with the same logits.")
    parser.add_argument("checkpoint", help="a .ckpt file written by cli.py fit (or PETModule under Lightning)")
    parser.add_argument("folder", help="the folder to write (created; files of an earlier export are replaced)")
    parser.add_argument("--merge", action="store_true",
                        help="merge LoRA / IA3 / DoRA / VeRA / AdaLoRA into a plain transformers model")
    parser.add_argument("--plain", action="store_true",
                        help="require a folder plain transformers / peft load with the same logits; refuse otherwise")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from pet_lightning.export import INFO_FILE, export
    from pet_lightning.module import PETModule

    try:
        module = PETModule.load_from_checkpoint(args.checkpoint, map_location="cpu")
        folder = export(module.eval(), args.folder, merge=args.merge, plain=args.plain)
    except (ValueError, RuntimeError, OSError) as err:
        # Our errors (ExportError, CheckpointError, BackboneError...) are one line naming the problem and the fix.
        print(f"error: {err}", file=sys.stderr)
        return 2
    info = json.loads((Path(folder) / INFO_FILE).read_text())
    loaders = "load_exported or plain transformers / peft" if info["plain"] else f"load_exported ({info['not_plain']})"
    print(f"exported {args.checkpoint} (strategy {module.strategy.name}, head {module.hparams.head}, pooler "
          f"{module.hparams.pooler}) to {folder}: load it with {loaders}")
    return 0


__all__ = ["build_parser", "main"]
