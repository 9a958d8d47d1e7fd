"""Multi-seed sweeps on Ray Tune: tasks x methods x seed modes x seeds, one trial per run.

The pipeline, one module each: :mod:`~pet_lightning.sweeps.plan` (sweep file -> run specs, pure),
:mod:`~pet_lightning.sweeps.trainable` (one run: a LightningCLI fit that checkpoints every epoch and resumes),
:mod:`~pet_lightning.sweeps.runner` (the Tuner: resources, restore, the command line),
:mod:`~pet_lightning.sweeps.progress` (records and the progress line, in the driver) and
:mod:`~pet_lightning.sweeps.records` (``results.jsonl``).
"""

from pet_lightning.sweeps.plan import MethodSpec, RunSpec, SweepConfig, SweepError, full_config, plan_runs
from pet_lightning.sweeps.records import append_result, load_results

__all__ = ["MethodSpec", "RunSpec", "SweepConfig", "SweepError", "append_result", "full_config", "load_results",
           "plan_runs"]
