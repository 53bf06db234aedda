"The dashboard in a real browser: JupyterLab, a kernel, Chromium driven by Playwright."
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT

CHROMIUM = Path('/usr/bin/chromium')
ARTIFACT = ROOT/'tests'/'artifacts'/'dashboard.png'
NOTES = Path('/work/notes')

# The kernel runs this notebook: the dashboard as 07_dashboard's demo cell builds it, a little smaller.
CELLS = ["import torch; torch.set_num_threads(1)",
         "from dpsd_nb.dashboard import Dashboard, setup_colab\n"
         "setup_colab()\n"
         "dash = Dashboard(teachers=10, teacher_epochs=20, steps=60, query_batch=20, eval_every=3, every=0.2)\n"
         "dash"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _wait_for_server(url: str, proc, timeout: float = 90.):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None: raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer {url} within {timeout} s")


def _plot(page, title: str):
    "The plotly figure whose title starts with `title`."
    return page.locator('.js-plotly-plot', has=page.locator('.gtitle', has_text=title))


@pytest.mark.slow
def test_dashboard_in_a_browser(tmp_path):
    if not CHROMIUM.exists(): pytest.skip(f"no {CHROMIUM}: apt-get install -y chromium")
    sync_api = pytest.importorskip('playwright.sync_api', reason='pip install playwright (no browser download needed)')
    if shutil.which('jupyter-lab') is None and shutil.which('jupyter') is None: pytest.skip('jupyterlab is not installed')

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, tmp_path/'dashboard.ipynb')
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
           'OMP_NUM_THREADS': '1', 'JUPYTER_RUNTIME_DIR': str(tmp_path/'runtime'), 'JUPYTER_CONFIG_DIR': str(tmp_path/'config')}
    news = tmp_path/'settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no news toast over the screenshot
    env['JUPYTERLAB_SETTINGS_DIR'] = str(tmp_path/'settings')
    log = open(tmp_path/'jupyter.log', 'w')
    server = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--allow-root', '--no-browser', '--ip=127.0.0.1',
                               f'--port={port}', f'--IdentityProvider.token={token}', '--LabApp.expose_app_in_browser=True',
                               f'--ServerApp.root_dir={tmp_path}'],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f'http://127.0.0.1:{port}'
        _wait_for_server(f'{base}/api/status?token={token}', server)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=['--no-sandbox'])
            page = browser.new_page(viewport={'width': 1600, 'height': 1600})
            try: _drive(page, base, token)
            except Exception:
                ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACT.with_name('dashboard-failure.png')), full_page=True)
                raise
            finally: browser.close()
    finally:
        try: os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        except ProcessLookupError: pass
        try: server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL); server.wait()
        log.close()


def _drive(page, base, token):
    "Open the notebook, run it, move the epsilon slider, press Run; check the figures; save a screenshot."
    page.goto(f'{base}/lab/tree/dashboard.ipynb?token={token}')
    page.wait_for_function("window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=90_000)
    page.wait_for_function("window.jupyterapp.shell.currentWidget && window.jupyterapp.shell.currentWidget.sessionContext"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel", timeout=90_000)
    page.evaluate("window.jupyterapp.commands.execute('application:toggle-left-area')")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    # the knobs and the privacy readout, before any training
    readout = page.locator('.widget-html-content', has_text='sigma =')
    readout.wait_for(timeout=120_000)
    sigma_before = readout.inner_text()
    slider = page.locator('.widget-hslider', has=page.locator('label', has_text='target epsilon'))
    slider.locator('.noUi-handle').click()
    for _ in range(5): page.keyboard.press('ArrowLeft')
    page.wait_for_function("t => [...document.querySelectorAll('.widget-html-content')].some("
                           "e => e.innerText.includes('sigma =') && e.innerText !== t)", arg=sigma_before, timeout=30_000)
    sigma_after = readout.inner_text()
    sigma = lambda text: float(re.search(r'sigma = ([0-9.e+-]+)', text).group(1))
    assert sigma(sigma_after) > sigma(sigma_before), (sigma_before, sigma_after)  # a smaller epsilon needs more noise

    eps_plot, samples = _plot(page, 'privacy spent'), _plot(page, 'samples')
    eps_before = eps_plot.locator('svg.main-svg').first.inner_html()
    images_before = [i.get_attribute('href') for i in samples.locator('image').all()]

    page.locator('button', has_text='Run').click()
    # mid-run: the status line counts steps while the plots fill; the screenshot shows that moment
    page.wait_for_function("() => [...document.querySelectorAll('.widget-html-content')].some(e => {"
                           " const m = e.innerText.match(/running .*step (\\d+)\\//); return m && +m[1] >= 10; })", timeout=300_000)
    page.wait_for_timeout(500)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACT), full_page=True)
    if NOTES.is_dir(): shutil.copy(ARTIFACT, NOTES/'dashboard.png')
    page.locator('.widget-html-content', has_text='done').wait_for(timeout=300_000)
    page.wait_for_timeout(1000)  # the final redraw reaches the browser

    assert page.locator('.widget-html-content', has_text='Error').count() == 0, page.locator('.widget-html-content', has_text='Error').inner_text()
    eps_after = eps_plot.locator('svg.main-svg').first.inner_html()
    assert eps_after != eps_before
    assert eps_plot.locator('.scatterlayer path.js-line').count() >= 2  # the run's epsilon and the target
    images_after = [i.get_attribute('href') for i in samples.locator('image').all()]
    assert len(images_after) == 2 and all(h and h.startswith('data:image/png') for h in images_after), images_after
    assert images_after != images_before
    page.screenshot(path=str(ARTIFACT.with_name('dashboard-done.png')), full_page=True)
