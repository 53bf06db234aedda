"""The Colab install cells install exactly the package this checkout holds (tools/pin_colab.py writes the pins)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
import pin_colab  # noqa: E402

NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))


def in_git() -> bool:
    return subprocess.run(['git', '-C', str(ROOT), 'rev-parse', '--git-dir'], capture_output=True).returncode == 0


def same_package(commit: str) -> bool:
    "True when the package files at `commit` equal the working tree's."
    return subprocess.run(['git', '-C', str(ROOT), 'diff', '--quiet', commit, '--', *pin_colab.PACKAGE]).returncode == 0


def test_every_notebook_that_uses_the_package_installs_it_pinned():
    users = [nb for nb in NOTEBOOKS if any('dpsd_nb' in ''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')]
    assert len(users) >= 20, [nb.name for nb in users]
    missing = [nb.name for nb in users if not pin_colab.pins(nb)]
    assert not missing, f"no Colab install cell in {missing}"
    unpinned = [nb.name for nb in users if '' in pin_colab.pins(nb)]
    assert not unpinned, f"unpinned install in {unpinned}: python tools/pin_colab.py"
    assert len({c for nb in users for c in pin_colab.pins(nb)}) == 1, {nb.name: pin_colab.pins(nb) for nb in users}


@pytest.mark.skipif(not in_git(), reason='the pin is checked against the git history of a checkout')
def test_the_pinned_commit_holds_this_package():
    commit, = {c for nb in NOTEBOOKS for c in pin_colab.pins(nb)}
    exists = subprocess.run(['git', '-C', str(ROOT), 'cat-file', '-e', f'{commit}^{{commit}}'], capture_output=True).returncode == 0
    assert exists, f"the pinned commit {commit} is not in this repository's history"
    on_main = subprocess.run(['git', '-C', str(ROOT), 'merge-base', '--is-ancestor', commit, 'HEAD'], capture_output=True).returncode == 0
    assert on_main, f"the pinned commit {commit} is not an ancestor of HEAD: a Colab install could not fetch it from the published branch"
    assert same_package(commit), f"the package changed since {commit[:12]}: commit it, then python tools/pin_colab.py"


@pytest.mark.skipif(not in_git(), reason='needs the git history')
def test_a_stale_pin_is_caught(tmp_path):
    "The check can fail: the repository's first commit that has the package differs from today's package."
    first = subprocess.run(['git', '-C', str(ROOT), 'log', '--reverse', '--format=%H', '--', 'dpsd_nb'], capture_output=True, text=True).stdout.split()[0]
    assert not same_package(first)
    nb = tmp_path/'x.ipynb'
    nb.write_text(NOTEBOOKS[0].read_text())
    assert pin_colab.pin(nb, first) and pin_colab.pins(nb) == [first]
