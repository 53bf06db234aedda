"""Execute the notebooks and store their outputs, so that a reader on GitHub (or in Colab, before running) sees
every table, plot and sample grid. Plotly figures are stored twice in one output: the interactive figure and a
static PNG (GitHub shows the PNG). Cells marked `#| slow` or `#| eval: false` are not run, as under `nbdev_test`;
`IN_TEST` is not set, so the notebooks run at their full size. One torch thread per notebook.

    python tools/render.py                          # every notebook of nbs/, in order (42 minutes here, 07 aside, on 2 shared CPU cores)
    python tools/render.py nbs/05_distill.ipynb     # one or a few
    python tools/render.py --check                  # fail unless every teaching notebook has a stored picture or table

Then `nbdev_clean` (which keeps outputs) and commit. Needs `kaleido` (in the dev extra) and a Chromium for the PNGs (
Debian's `chromium`). The outputs are reproducible except what reads the secret privacy noise.
"""
import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = ('slow', 'notest')  # settings.ini's tst_flags


def _directives(source: str) -> dict:
    out = {}
    for line in source.splitlines():
        if not line.startswith('#|'): break
        words = line[2:].split()
        if words: out[words[0].rstrip(':')] = words[1:]
    return out


def _skipped(cell) -> bool:
    if cell.cell_type != 'code': return True
    d = _directives(cell.source)
    return any(f in d for f in SKIP) or (d.get('eval') or [''])[0].lower() == 'false'


def _failed_pictures(nb) -> list:
    "Cells where a figure's picture failed (IPython prints a formatter's traceback instead of raising), e.g. kaleido's startup race."
    return [i for i, c in enumerate(nb.cells) if c.cell_type == 'code' and any(
        o.get('output_type') == 'stream' and 'Traceback' in ''.join(o.get('text', '')) for o in c.get('outputs', []))]


def render(path: Path, tries: int = 3) -> float:
    "Run `path` in a fresh IPython shell in its own folder and write it back with the outputs (again if a picture failed)."
    for _ in range(tries):
        took, failed = _render_once(path)
        if not failed: return took
        print(f"{path.name}: a picture failed in cells {failed}; running it again", flush=True)
    raise RuntimeError(f"{path.name}: pictures failed in cells {failed} after {tries} runs")


def _render_once(path: Path):
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    nb = read_nb(path)
    for c in nb.cells:
        if c.cell_type == 'code' and _skipped(c): c.outputs = []
    start = time.time()
    shell = CaptureShell(path)
    with working_directory(path.parent):
        shell.run_all(nb, exc_stop=True, preproc=_skipped)
    for c in nb.cells:  # one picture per output (Pillow offers a JPEG too), no empty results after a shown figure
        if c.cell_type != 'code': continue
        for o in c.get('outputs', []):
            if 'data' in o and 'image/png' in o['data']: o['data'].pop('image/jpeg', None)
        c.outputs = [o for o in c.get('outputs', []) if not (o.get('output_type') == 'execute_result' and not o.get('data'))]
    write_nb(nb, path)
    return time.time() - start, _failed_pictures(nb)


def _shows_something(path: Path) -> bool:
    "A stored image (PNG, SVG) or HTML table among the outputs, or a picture in the markdown."
    import json
    for c in json.loads(path.read_text())['cells']:
        if c['cell_type'] == 'markdown' and any('colab-badge' not in url for url in re.findall(r'!\[[^\]]*\]\(([^)\s]+)', ''.join(c['source']))):
            return True  # a picture in the prose (the Colab badge is not one)
        for o in c.get('outputs', []):
            data = o.get('data', {})
            if 'image/png' in data or 'image/svg+xml' in data or '<table' in ''.join(data.get('text/html', [])): return True
            if ' --- |' in ''.join(data.get('text/markdown', [])): return True  # a Markdown table
    return False


def teaching_notebooks():
    return sorted((ROOT/'nbs').glob('*.ipynb'))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('paths', nargs='*', type=Path)
    p.add_argument('--check', action='store_true', help='only check that every teaching notebook shows a stored picture or table')
    args = p.parse_args()
    paths = [q.resolve() for q in args.paths] or teaching_notebooks()
    if args.check:
        bare = [q.name for q in paths if not _shows_something(q)]
        if bare: sys.exit(f"no stored picture or table in {', '.join(bare)}: run python tools/render.py on them")
        print(f"{len(paths)} notebooks, each with a stored picture or table"); return
    os.environ.pop('IN_TEST', None)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ['PLOTLY_RENDERER'] = 'plotly_mimetype+png'  # the interactive figure and, for GitHub, its PNG
    for q in paths:
        print(f"{q.name}: {render(q):.0f} s", flush=True)


if __name__ == '__main__':
    main()
