"""The base of every error pet_lightning raises on purpose: a bad input, a missing file, a run that cannot go on.

Each error's message is one line that names the problem and the fix; ``python cli.py`` prints it as ``error:
<message>`` and exits with code 2, without a traceback. Catch :class:`PetLightningError` to catch all of them. It
is a ``ValueError``, so code that caught a ``ValueError`` before the common base existed still does.
"""

from __future__ import annotations


class PetLightningError(ValueError):
    """A pet_lightning error: a one-line message that names the problem and the fix."""


class StudyError(PetLightningError):
    """Records that a study layout cannot report (another study, mixed scales, runs without a layout's inputs), or
    a study file that names no layout."""


__all__ = ["PetLightningError", "StudyError"]
