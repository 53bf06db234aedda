import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    "Every test caches teachers in its own folder, never in the user's home."
    monkeypatch.setenv('DPSD_NB_CACHE', str(tmp_path_factory.mktemp('cache')))


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: a long test (real browser, JupyterLab); run by CI, deselect with -m "not slow"')
