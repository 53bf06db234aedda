"""The dashboard in a real browser (Debian's Chromium driven by Playwright), in a 1280 x 800 window, twice:
JupyterLab with this venv's widgets (the live plotly figures), and the classic notebook with Colab's widget
stack (ipywidgets 7.7.1, plotly 5.24.1, anywidget 0.9.21) in a venv of its own, where a stand-in for
`google.colab` makes the dashboard take its static path by itself. Then 07_dashboard's own tests in that venv."""
import importlib.metadata
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT

CHROMIUM = Path('/usr/bin/chromium')
ARTIFACTS = ROOT/'tests'/'artifacts'
NOTES = Path('/work/notes')
WINDOW = {'width': 1280, 'height': 800}  # the dashboard must fit this window's width
TALL = {'width': 1280, 'height': 2600}  # the same width, tall enough for a screenshot of the whole dashboard
COLAB_PINS = ('ipywidgets==7.7.1', 'widgetsnbextension==3.6.10', 'plotly==5.24.1', 'anywidget==0.9.21', 'notebook==6.5.7')
COLAB_VENV = Path(os.environ.get('DPSD_NB_COLAB_VENV', ROOT/'.cache'/'colab-venv'))
OFFLINE = ('NewConnectionError', 'Temporary failure in name resolution', 'No matching distribution', 'Max retries exceeded',
           'Network is unreachable', 'Could not fetch URL', 'ConnectionError', 'ReadTimeoutError')

VERSIONS = ("import ipywidgets, plotly, anywidget\n"
            "print(f'versions: ipywidgets {ipywidgets.__version__} | plotly {plotly.__version__} | anywidget {anywidget.__version__}')")
# The kernel runs the dashboard as 07_dashboard's demo cell builds it, a little smaller.
DASHBOARD = ("import torch; torch.set_num_threads(1)\n"
             "from dpsd_nb.dashboard import Dashboard, setup_colab\n"
             "colab = setup_colab()\n"
             "dash = Dashboard(teachers=10, teacher_epochs=20, steps=60, query_batch=20, eval_every=3, every=0.2)\n"
             "print(f'static path: {dash.static}, setup_colab: {colab}')\n"
             "dash")
# What Colab's kernel has and this one lacks: a google.colab module (with the call `setup_colab` makes).
COLAB = ("import sys, types\n"
         "colab = sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
         "colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: None)")

# the two frontends: the page of a notebook, when its kernel is there, how to run all cells, an output and the notebook's area
LAB = dict(url='/lab/tree/dashboard.ipynb', area='.jp-OutputArea-output', visible='.jp-WindowedPanel-outer', settle=0,
           ready="window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel",
           run_all="window.jupyterapp.commands.execute('application:toggle-left-area');"
                   "window.jupyterapp.commands.execute('notebook:run-all-cells')")
CLASSIC = dict(url='/notebooks/dashboard.ipynb', area='.output_subarea', visible='#notebook-container',
               # ipywidgets 7's manager comes with the kernel and first fetches the kernel's widgets: a cell run before
               # that fetch is done can leave its widget unrendered ("Control comm was closed too early"), so wait a little
               ready="window.Jupyter?.notebook?.kernel?.is_connected() && Jupyter.notebook.kernel.widget_manager", settle=3000,
               run_all="Jupyter.notebook.execute_all_cells()")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _wait_for_server(url: str, proc, timeout: float = 90.):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None: raise RuntimeError(f"the Jupyter server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.5)
    raise TimeoutError(f"the Jupyter server did not answer {url} within {timeout} s")


def _needs_browser():
    if not CHROMIUM.exists(): pytest.skip(f"no {CHROMIUM}: apt-get install -y chromium")
    return pytest.importorskip('playwright.sync_api', reason='pip install playwright (no browser download needed)')


@pytest.fixture(scope='module')
def teacher_cache(tmp_path_factory):
    "One teacher cache for both frontends: the teachers are trained once."
    return tmp_path_factory.mktemp('teachers')


@contextmanager
def _server(python, app: str, cells: list, folder: Path, cache: Path):
    "A Jupyter server (`app`: jupyterlab or notebook, run by `python`) over a notebook of `cells`; yields its URL and token."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, folder/'dashboard.ipynb')
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]), 'OMP_NUM_THREADS': '1',
           'DPSD_NB_CACHE': str(cache), 'JUPYTER_RUNTIME_DIR': str(folder/'runtime'), 'JUPYTER_CONFIG_DIR': str(folder/'config'),
           'JUPYTERLAB_SETTINGS_DIR': str(folder/'settings')}
    news = folder/'settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no news toast over the screenshot
    args = {'jupyterlab': [f'--IdentityProvider.token={token}', '--LabApp.expose_app_in_browser=True', f'--ServerApp.root_dir={folder}'],
            'notebook': [f'--NotebookApp.token={token}', f'--NotebookApp.notebook_dir={folder}']}[app]
    log = open(folder/f'{app}.log', 'w')
    server = subprocess.Popen([str(python), '-m', app, '--allow-root', '--no-browser', '--ip=127.0.0.1', f'--port={port}', *args],
                              cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f'http://127.0.0.1:{port}'
        _wait_for_server(f'{base}/api/status?token={token}', server)
        yield base, token
    finally:
        try: os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        except ProcessLookupError: pass
        try: server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL); server.wait()
        log.close()


@contextmanager
def _page(sync_api, name: str):
    "A Chromium page of `WINDOW`'s size and the errors its console reports; `name`-failure.png if the block fails."
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=['--no-sandbox'])
        page, errors = browser.new_page(viewport=WINDOW), []
        page.on('console', lambda m: m.type == 'error' and errors.append(m.text))
        page.on('pageerror', lambda e: errors.append(str(e)))
        try: yield page, errors
        except Exception as e:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS/f'{name}-failure.html').write_text(page.content())
            page.set_viewport_size(TALL)
            page.screenshot(path=str(ARTIFACTS/f'{name}-failure.png'), full_page=True)
            e.add_note(f'console errors: {errors}')
            raise
        finally: browser.close()


@pytest.mark.slow
def test_dashboard_in_jupyterlab(tmp_path, teacher_cache):
    "This venv's versions: the live plotly figures; the epsilon slider moved by the keyboard."
    sync_api = _needs_browser()
    if importlib.util.find_spec('jupyterlab') is None: pytest.skip('jupyterlab is not installed')
    with _server(sys.executable, 'jupyterlab', [VERSIONS, DASHBOARD], tmp_path, teacher_cache) as (base, token), \
         _page(sync_api, 'dashboard') as (page, errors):
        _open(page, LAB, f'{base}{LAB["url"]}?token={token}')
        want = {m: importlib.metadata.version(m) for m in ('ipywidgets', 'plotly', 'anywidget')}
        _check_versions(page, LAB, want, static=False)
        slider = page.locator('.widget-hslider', has=page.locator('label', has_text='target epsilon'))
        readout = page.locator('.widget-html-content', has_text='one answer alone')
        sigma_before = _sigma(readout.inner_text())
        slider.locator('.noUi-handle').click()
        for _ in range(5): page.keyboard.press('ArrowLeft')
        page.wait_for_function("t => [...document.querySelectorAll('.widget-html-content')].some("
                               "e => e.innerText.includes('sigma =') && e.innerText !== t)", arg=readout.inner_text(), timeout=30_000)
        assert _sigma(readout.inner_text()) > sigma_before  # a smaller epsilon needs more noise
        _drive(page, LAB, 'dashboard', static=False)
        if NOTES.is_dir(): shutil.copy(ARTIFACTS/'dashboard.png', NOTES/'dashboard.png')
        assert errors == [], errors


@pytest.mark.slow
def test_dashboard_with_colabs_versions(tmp_path, teacher_cache):
    "Colab's widget stack in the classic notebook: the dashboard sees google.colab and takes its static path (SVG and PNG)."
    sync_api = _needs_browser()
    python = _colab_python()
    with _server(python, 'notebook', [COLAB, VERSIONS, DASHBOARD], tmp_path, teacher_cache) as (base, token), \
         _page(sync_api, 'dashboard-colab') as (page, errors):
        _open(page, CLASSIC, f'{base}{CLASSIC["url"]}?token={token}')
        _check_versions(page, CLASSIC, dict(p.split('==') for p in COLAB_PINS if not p.startswith(('notebook', 'widgetsnb'))), static=True)
        _drive(page, CLASSIC, 'dashboard-colab', static=True)
        assert errors == [], errors


@pytest.mark.slow
def test_every_notebook_with_colabs_versions(teacher_cache):
    "Every notebook, top to bottom from its install cell, under Colab's widget stack: 07's live path with plotly 5's FigureWidget, its static path, the presets."
    code = ("import sys, ipywidgets, plotly, anywidget\n"
            "print('versions:', ipywidgets.__version__, plotly.__version__, anywidget.__version__, flush=True)\n"
            "from nbdev.test import nbdev_test\n"
            "sys.argv = ['nbdev_test', '--n_workers', '2']\n"
            "nbdev_test()")
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'DPSD_NB_CACHE': str(teacher_cache)}
    run = subprocess.run([str(_colab_python()), '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    out = run.stdout + run.stderr
    assert 'versions: 7.7.1 5.24.1 0.9.21' in out and run.returncode == 0 and 'Success' in out, out[-4000:]


def _colab_python() -> Path:
    "The python of a venv with Colab's widget stack over this venv's packages (torch and the rest, not installed twice); made once."
    base, py, stamp = sysconfig.get_path('purelib'), COLAB_VENV/'bin'/'python', COLAB_VENV/'made-for.txt'
    want = '\n'.join((*COLAB_PINS, base))
    if py.exists() and stamp.exists() and stamp.read_text() == want: return py
    shutil.rmtree(COLAB_VENV, ignore_errors=True)
    subprocess.run([sys.executable, '-m', 'venv', str(COLAB_VENV)], check=True)
    pip = subprocess.run([str(py), '-m', 'pip', 'install', '-q', '--disable-pip-version-check', *COLAB_PINS],
                         capture_output=True, text=True, timeout=900)
    if pip.returncode:
        shutil.rmtree(COLAB_VENV, ignore_errors=True)
        tail = pip.stderr.strip()[-800:]
        if any(s in pip.stderr for s in OFFLINE): pytest.skip(f"cannot install Colab's widget stack (no network?): {tail}")
        raise RuntimeError(f"pip install {' '.join(COLAB_PINS)} failed:\n{tail}")
    own = subprocess.run([str(py), '-c', "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    # processed last and appended to sys.path: the venv's own (pinned) packages come first, this venv's fill in the rest
    Path(own, 'zz_dpsd_nb_base.pth').write_text(f"import site; site.addsitedir({base!r})\n")
    stamp.write_text(want)
    return py


def _open(page, fe: dict, url: str):
    "Open the notebook, wait for its kernel, run all cells, wait for the privacy readout."
    page.goto(url)
    page.wait_for_function(f"() => {fe['ready']}", timeout=90_000)
    page.wait_for_timeout(fe['settle'])
    page.evaluate(f"() => {{ {fe['run_all']} }}")
    page.locator('.widget-html-content', has_text='one answer alone').wait_for(timeout=180_000)


def _check_versions(page, fe: dict, want: dict, static: bool):
    "The versions the kernel imported, and the path the dashboard took, as its cells printed them."
    text = page.locator(fe['area'], has_text='versions: ipywidgets').inner_text()
    got = dict(re.findall(r'(\w+) ([0-9][\w.]*)', text))
    assert got == want, (got, want)
    assert f'static path: {static}' in page.locator(fe['area'], has_text='static path:').inner_text()


_sigma = lambda text: float(re.search(r'sigma = ([0-9.e+-]+)', text).group(1))


def _drive(page, fe: dict, name: str, static: bool):
    "Presets, a run from the Run button, the figures and grids filled; nothing sticks out of the notebook; screenshots `name`*.png."
    dash = page.locator('.dpsd-dashboard')
    readout = page.locator('.widget-html-content', has_text='one answer alone')
    preset = lambda p: dash.get_by_role('button', name=p, exact=True)
    preset('no noise').click()
    page.locator('.widget-html-content', has_text='NOT private').wait_for(timeout=30_000)
    assert 'sigma =' not in readout.inner_text()
    sigma = {}
    for p in ('epsilon 1', 'epsilon 10'):  # the run below: epsilon 10
        preset(p).click()
        page.wait_for_function("p => document.querySelector('.dpsd-dashboard').innerText.includes('sigma =')"
                               " && [...document.querySelectorAll('.dpsd-dashboard .widget-toggle-button.mod-active')].some(b => b.innerText.trim() === p)",
                               arg=p, timeout=30_000)
        page.wait_for_timeout(300)
        sigma[p] = _sigma(readout.inner_text())
    assert sigma['epsilon 1'] > 5 * sigma['epsilon 10'], sigma  # one click apart: ten times less epsilon, far more noise
    _check_fit(page, fe)

    images = dash.locator('img')
    before = [i.get_attribute('src') for i in images.all()]
    page.set_viewport_size(TALL)
    dash.get_by_role('button', name='Run', exact=True).click()
    # mid-run: the status line counts steps while the plots fill; the screenshot shows that moment
    page.wait_for_function("() => [...document.querySelectorAll('.widget-html-content')].some(e => {"
                           " const m = e.innerText.match(/running .*step (\\d+)\\//); return m && +m[1] >= 10; })", timeout=300_000)
    page.wait_for_timeout(500)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS/f'{name}.png'), full_page=True)
    status = dash.locator('.widget-html-content', has_text='device:')
    page.wait_for_function("() => [...document.querySelectorAll('.dpsd-dashboard .widget-html-content')]"
                           ".some(e => /^(done|failed|stopped) [|] device/.test(e.innerText.trim()))", timeout=300_000)
    page.wait_for_timeout(1000)  # the final redraw reaches the browser
    page.screenshot(path=str(ARTIFACTS/f'{name}-done.png'), full_page=True)

    errors = page.locator('.dpsd-dashboard .widget-html-content', has_text='Error')
    assert errors.count() == 0, errors.first.inner_text()
    status = status.inner_text()
    assert status.startswith('done') and 0 < float(re.search(r'epsilon spent ([0-9.]+)', status).group(1)) <= 10 + 1e-6, status
    assert images.count() == 2
    for i in images.all():  # the grids: PNGs, 6 or 8 images of 48 pixels or more in each of the 10 rows (one per class)
        assert i.evaluate('e => e.complete && e.naturalWidth >= 6 * 48 && e.naturalHeight >= 10 * 48'), i.get_attribute('src')
    assert [i.get_attribute('src') for i in images.all()] != before
    if static: _check_static_figures(dash)
    else: _check_live_figures(dash)
    page.set_viewport_size(WINDOW)
    page.wait_for_timeout(500)
    _check_fit(page, fe)  # now with every figure and grid drawn


def _check_live_figures(dash):
    eps_plot = dash.locator('.js-plotly-plot', has=dash.page.locator('.gtitle', has_text='privacy spent'))
    assert eps_plot.locator('.scatterlayer path.js-line').count() >= 2  # the run's epsilon and the target
    acc_plot = dash.locator('.js-plotly-plot', has=dash.page.locator('.gtitle', has_text='student accuracy'))
    assert acc_plot.locator('.scatterlayer .point').count() >= 10


def _check_static_figures(dash):
    assert dash.locator('.js-plotly-plot').count() == 0  # no plotly.js: plain SVG
    chart = lambda title: dash.locator('.dpsd-chart', has=dash.page.locator('text.title', has_text=title))
    for title, lines in (('privacy spent', 2), ('student accuracy', 1)):
        paths = chart(title).locator('path.trace')
        assert paths.count() == lines and paths.first.get_attribute('d').count('L') >= 10, title
    assert chart('what the noise does').locator('rect.trace').count() == 20  # 10 candidates, clean and released


FIT = """([area, visible]) => {
  const dash = document.querySelector('.dpsd-dashboard'), out = dash.closest(area);
  const a = out.getBoundingClientRect(), v = document.querySelector(visible).getBoundingClientRect();
  const left = Math.max(a.left, v.left, 0), right = Math.min(a.right, v.right, window.innerWidth);
  const name = e => e.tagName.toLowerCase() + '.' + [...e.classList].slice(0, 3).join('.');
  const out_of = [...dash.querySelectorAll('*')].map(e => [e, e.getBoundingClientRect()])
    .filter(([e, b]) => b.width > 0 && b.height > 0 && (b.left < left - 1 || b.right > right + 1))
    .map(([e, b]) => `${name(e)} ${Math.round(b.left)}..${Math.round(b.right)}`);
  return {left, right, scroll: out.scrollWidth - out.clientWidth, out_of: out_of.slice(0, 20),
          figures: dash.querySelectorAll('.js-plotly-plot, .dpsd-chart, img').length};
}"""


def _check_fit(page, fe: dict):
    "No part of the dashboard (panel, figure, grid) reaches beyond the output area or the notebook's visible area."
    fit = page.evaluate(FIT, [fe['area'], fe['visible']])
    assert fit['figures'] == 5, fit  # three figures, two grids
    assert fit['out_of'] == [] and fit['scroll'] <= 0, fit
