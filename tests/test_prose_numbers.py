"""Every figure in a notebook's prose is shown by a stored output of the same notebook or cites its source on its line.

The check is the project's shared one (`../shared/tools/prose_numbers.py`, beside the repository on this project's
machines and in CI). Notebooks still being rewritten are listed in PENDING (issue 33); the list only shrinks.
"""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent/'shared'/'tools'/'prose_numbers.py'
PENDING = set()
NOTEBOOKS = [nb for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')) + [ROOT/'nbs'/'index.ipynb'] if nb.stem not in PENDING]  # the index is the README


def tool():
    if not TOOL.exists(): pytest.skip(f'{TOOL} is not beside this checkout')
    spec = importlib.util.spec_from_file_location('prose_numbers', TOOL)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_no_typed_figure(nb):
    rows = tool().check(str(nb))
    assert not rows, '\n'.join(f"cell {i}: {num} | {line}" for i, num, line in rows)


def test_pending_notebooks_exist_and_the_check_can_fail(tmp_path):
    assert PENDING <= {p.stem for p in (ROOT/'nbs').glob('*.ipynb')}, PENDING
    bad = tmp_path/'bad.ipynb'
    bad.write_text('{"cells": [{"cell_type": "markdown", "source": ["The student reached 0.873 here."]}, '
                   '{"cell_type": "code", "source": ["1"], "outputs": [{"output_type": "stream", "text": ["0.5"]}]}]}')
    assert [num for _, num, _ in tool().check(str(bad))] == ['0.873']
