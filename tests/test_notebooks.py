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


def _render_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('render', ROOT/'tools'/'render.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


RENDER = _render_tool()


@pytest.mark.parametrize('path', RENDER.teaching_notebooks(), ids=lambda p: p.stem)
def test_a_reader_on_github_sees_a_stored_picture_or_table(path):
    assert RENDER._shows_something(path), f"{path.name} stores no picture or table: run `python tools/render.py nbs/{path.name}`, then nbdev_clean"


def test_the_check_sees_a_bare_notebook(tmp_path):
    bare = tmp_path/'bare.ipynb'
    badge = '[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/x)'
    bare.write_text(json.dumps({'cells': [{'cell_type': 'markdown', 'source': [badge]}, {'cell_type': 'code', 'source': ['1 + 1'], 'outputs': [
        {'output_type': 'execute_result', 'data': {'text/plain': ['2']}}]}]}))
    assert not RENDER._shows_something(bare)
    shown = json.loads(bare.read_text()); shown['cells'][1]['outputs'][0]['data']['image/png'] = 'iVBORw0KGgo='
    bare.write_text(json.dumps(shown))
    assert RENDER._shows_something(bare)


@pytest.mark.parametrize('path', RENDER.teaching_notebooks(), ids=lambda p: p.stem)
def test_no_stored_output_is_a_traceback(path):
    "A figure whose picture failed leaves a formatter's traceback in a stream, not an error: it must not be committed."
    for i, c in enumerate(json.loads(path.read_text())['cells']):
        for o in c.get('outputs', []):
            assert not (o['output_type'] == 'stream' and 'Traceback' in ''.join(o.get('text', ''))), f"{path.name}, cell {i}: render it again"


def test_dashboard_notebook_holds_with_torch_default_threads():
    "07's checks hold as a plain Jupyter kernel runs them: torch's default thread count, not CI's OMP_NUM_THREADS=1 (its bit-for-bit check once failed there)."
    import os, subprocess, sys
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')}
    done = subprocess.run([str(Path(sys.executable).parent/'nbdev_test'), '--path', str(ROOT/'nbs'/'07_dashboard.ipynb')],
                          capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert done.returncode == 0 and 'Success' in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]


def _output_texts(path):
    "(cell index, output kind, text) of every stored text output."
    for i, c in enumerate(json.loads(path.read_text())['cells']):
        for o in c.get('outputs', []):
            texts = [''.join(o.get('text', ''))] + [v if isinstance(v, str) else ''.join(v) for k, v in o.get('data', {}).items()
                                                    if k.startswith('text/') and isinstance(v, (str, list))]
            yield i, o.get('name', o['output_type']), '\n'.join(texts)


MACHINE_PATHS = ('/work/', '/home/', 'site-packages', str(ROOT))
STORED_PENDING = set()  # notebooks whose re-render is still due (none now)


@pytest.mark.parametrize('path', [p for p in RENDER.teaching_notebooks() if p.stem not in STORED_PENDING], ids=lambda p: p.stem)
def test_stored_outputs_hold_no_machine_path_or_progress_dump(path):
    "What GitHub shows a reader: no file path of the machine that rendered it, no progress bar's every redraw."
    for i, kind, text in _output_texts(path):
        assert not any(p in text for p in MACHINE_PATHS), f"{path.name}, cell {i}: a machine path in a stored output: {text[:300]}"
        assert text.count('\r') <= 5, f"{path.name}, cell {i}: {text.count(chr(13))} progress redraws stored; pass progress=False or render again"


def test_the_stored_output_check_can_fail(tmp_path):
    nb = tmp_path/'x.ipynb'
    nb.write_text(json.dumps({'cells': [{'cell_type': 'code', 'source': ['1'], 'outputs': [
        {'output_type': 'stream', 'name': 'stderr', 'text': ['/work/main/.venv/lib/python3.11/site-packages/opacus/x.py:1: UserWarning']},
        {'output_type': 'stream', 'name': 'stderr', 'text': ['\r1%\r2%\r3%\r4%\r5%\r6%']}]}]}))
    texts = [t for _, _, t in _output_texts(nb)]
    assert any(p in texts[0] for p in MACHINE_PATHS) and texts[1].count('\r') > 5
