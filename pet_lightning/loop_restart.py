"""A repair of Lightning's loop state for fits resumed from a checkpoint, applied by the module at train start.

It lives below the callbacks (the module calls it, for every fit with or without the resume callback); the rest of
the exact-resume contract is listed in ``docs/resume.md``.
"""

from __future__ import annotations


def repair_epoch_end_restart(trainer) -> bool:
    """Make a fit resumed from a checkpoint of an epoch's last batch start the next epoch like any other.

    Lightning (2.6) moves the epoch counter on for such a checkpoint but keeps its "restarted mid-epoch" stage, so
    the next epoch skips ``on_train_epoch_start`` (a two-stage run never switches) and its ready/started counters,
    and a checkpoint written later in that epoch then restores as the *end* of an epoch. Called at train start,
    after Lightning's own restart bookkeeping; returns whether it acted.
    """
    fit_loop = trainer.fit_loop
    epoch_loop = fit_loop.epoch_loop
    if fit_loop.restarted_mid_epoch and epoch_loop.restarted_on_train_batch_end and (
        epoch_loop.batch_progress.is_last_batch
    ):
        fit_loop.reset_restart_stage()
        return True
    return False


__all__ = ["repair_epoch_end_restart"]
