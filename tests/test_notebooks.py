"Every notebook a reader opens starts in Colab: its own Colab badge, then an install cell that runs only there."
import json
from configparser import ConfigParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT/'nbs').glob('[0-9]*.ipynb'))


def _cells(path): return [(c['cell_type'], ''.join(c['source'])) for c in json.loads(path.read_text())['cells']]


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_opens_in_colab_with_its_install_cell_first(path):
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini')
    repo = cfg['DEFAULT']['git_url'].removeprefix('https://github.com/')
    cells = _cells(path)
    assert cells[0][0] == 'markdown' and cells[0][1].startswith('# '), 'the title comes first'
    assert cells[1] == ('markdown', f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                                    f"(https://colab.research.google.com/github/{repo}/blob/main/nbs/{path.name})"), cells[1]
    kind, install = cells[2]
    assert kind == 'code' and "if 'google.colab' in sys.modules:" in install and f'git+https://github.com/{repo}' in install, install
    assert '--upgrade' not in install and '-U ' not in install  # Colab's ipywidgets stays as it is
    first_import = next((i for i, (k, s) in enumerate(cells) if k == 'code' and 'dpsd_nb' in s), None)
    assert first_import is None or first_import > 2, 'the install cell runs before the package is imported'
