"""Studies: the grids the seed papers ran (``configs/studies/*.yaml``), their report layouts and published tables.

A study file is a sweep file with a ``study`` key naming its layout and ``scales`` (``cpu``, ``paper``). Its
records carry ``study`` and ``scale``; ``python cli.py report`` finds the layout from them and writes the tables
in the paper's shape, the published figures beside ours (:mod:`pet_lightning.studies.published`), and findings
that test the paper's claims on our numbers. Layouts register by name with ``@layout``
(:mod:`pet_lightning.studies.registry`); :mod:`pet_lightning.studies.layouts` holds them all.
"""
