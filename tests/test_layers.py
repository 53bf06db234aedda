"""The package's modules in layers: each imports only modules below it, read from the source with `ast` (imports inside
functions included), so that no import circle can form. The order is the notebooks' reading order (see the table "How
the package is built" in the index)."""
import ast
from pathlib import Path

import pytest

from conftest import ROOT

LAYERS = ['data', 'models', 'teachers', 'mechanisms', 'accountant', 'pate_analysis', 'audit', 'distill', 'improve', 'evaluate', 'dpsgd',
          'dashboard', 'cli', 'results', 'pate', 'readme']  # bottom first; readme (README from the index) imports nothing
PEERS = {frozenset({'dashboard', 'cli'}), frozenset({'evaluate', 'dpsgd'})}  # side by side: neither may import the other
LAZY = {'cli'}  # the command imports torch and the package inside its functions, so that --help answers at once


def package_imports(source:str, module:str) -> set:
    "(module, imported package module, inside a function) for every import of a `dpsd_nb` module in `source`."
    found, tree = set(), ast.parse(source)
    funcs = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level == 1: names = [node.module] if node.module else [a.name for a in node.names]
            elif (node.module or '').startswith('dpsd_nb'): names = [node.module.split('.')[1]] if '.' in node.module else [a.name for a in node.names]
        elif isinstance(node, ast.Import): names = [a.name.split('.')[1] for a in node.names if a.name.startswith('dpsd_nb.')]
        found |= {(module, n.split('.')[0], id(node) in funcs) for n in names if n and n.split('.')[0] != '_modidx'}
    return found

def violations(imports:set) -> set:
    "Upward imports (or imports between peers), and imports inside functions where lazy imports are not the rule."
    rank = {m: i for i, m in enumerate(LAYERS)}
    bad = set()
    for module, target, in_function in imports:
        if target not in rank: continue  # __init__ (the version)
        if rank[target] >= rank[module] or frozenset({module, target}) in PEERS: bad.add((module, target))
        elif in_function and module not in LAZY: bad.add((module, target))
    return bad

def all_imports() -> set:
    return set().union(*(package_imports(p.read_text(), p.stem) for p in (ROOT/'dpsd_nb').glob('*.py') if not p.stem.startswith('_')))


def test_every_module_has_a_layer():
    modules = {p.stem for p in (ROOT/'dpsd_nb').glob('*.py') if not p.stem.startswith('_')}
    assert modules == set(LAYERS), f"place {modules - set(LAYERS)} in LAYERS (and in the index's table); drop {set(LAYERS) - modules}"

def test_modules_import_only_modules_below_them():
    bad = violations(all_imports())
    assert not bad, f"upward imports (or inside a function): {sorted(bad)}; the layers, bottom first: {LAYERS}"

def test_the_layers_follow_the_reading_order():
    "Each module's notebook comes after the notebooks of the modules below it."
    order = {}
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        for line in nb.read_text().split('\\n'):  # the notebook's JSON: a cell's lines end in an escaped newline
            if '#| default_exp ' in line: order[line.split('#| default_exp ')[1].split('"')[0].strip()] = nb.name
    notebooks = [order[m] for m in LAYERS]
    assert notebooks == sorted(notebooks), f"the notebooks, in the layers' order: {notebooks}"

@pytest.mark.parametrize('source,module', [('from .cli import main', 'mechanisms'),  # upward
                                           ('from dpsd_nb.dashboard import Dashboard', 'cli'),  # between peers
                                           ('def f():\n    from .distill import Distiller', 'evaluate'),  # a function hiding an import
                                           ('import dpsd_nb.pate', 'accountant'),
                                           ('from .dpsgd import train_dpsgd', 'evaluate'),  # between peers
                                           ('from dpsd_nb.improve import fit_together', 'distill')])
def test_the_check_catches_a_planted_import(source, module):
    assert violations(package_imports(source, module)), (source, module)
