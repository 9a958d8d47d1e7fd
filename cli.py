"""Entry point: ``python cli.py fit --config configs/quickstart.yaml`` (also validate, test, predict, sweep, study,
report, audit, export; ``python cli.py --help`` lists them)."""

import sys

from pet_lightning.cli import main

if __name__ == "__main__":
    sys.exit(main())
