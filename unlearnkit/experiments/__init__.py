"""The code behind each chapter's own experiments, one module per chapter.

A chapter keeps only the few functions that draw its own figures; everything else it computes
lives here, tested (``tests/test_experiments_*.py``), each function's docstring naming the
chapter that explains it. Helpers more than one chapter needs live in the library's shared
modules instead (:mod:`unlearnkit.tables`, :mod:`unlearnkit.claims`, :mod:`unlearnkit.plots`,
:mod:`unlearnkit.tasks`).
"""
