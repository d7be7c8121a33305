"""Helpers shared by tests and load tools that are not end-to-end (those live beside the e2e tests).

Importable as ``support`` once ``tests/`` is on ``sys.path``: ``tests/conftest.py`` puts it there for pytest
(which runs with ``--import-mode=importlib``), and scripts such as ``loadtest/hotpath.py`` insert it themselves.
"""
