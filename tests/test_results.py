"""The results module (11_results) on a fixture: made-up numbers in the benchmark's format, written to a temporary
folder (never into bench/results/), one sample grid present. The notebook itself shows only the real results."""
import json
import math

import pytest
import torch
from fastcore.test import test_eq as check_eq, test_fail as check_fails

import dpsd_nb.data as data_module
from dpsd_nb.data import results_folder
from dpsd_nb.evaluate import save_image_atomic
import dpsd_nb.results as results
from dpsd_nb.results import (cell_text, load_results, pate_table, results_table, sample_files, show_results, show_samples,
                             steps_text, tradeoff_figure)


def row(method, mode, accuracy, epsilon, queries=0, samples=None):
    return dict(method=method, mode=mode, accuracy=accuracy, epsilon=epsilon, queries=queries, seconds=1.5, samples=samples)


@pytest.fixture(scope='module')
def fixture(tmp_path_factory):
    folder = tmp_path_factory.mktemp('results')
    (folder/'utility-toy.json').write_text(json.dumps(dict(
        dataset='toy', machine='a test fixture', command='none: made-up numbers', delta=1e-5, seed=0, teachers=20,
        privacy_unit='one record, replace-one', steps=3,
        rows=[row('teachers (no privacy)', '', 0.94, 'inf'),
              row('DPSD', 'label', 0.2, 1.0, 100, 'samples-toy-label-eps1.png'), row('DPSD', 'label', 0.4, 9.99, 100),
              row('DPSD', 'label', 0.7, 'inf', 20000), row('DPSD', 'data', 0.3, 10.0, 100, 'samples-toy-data-eps10.png'),
              row('DP-SGD (Opacus)', '', 0.93, 9.99), dict(row('DP-SGD (Opacus)', '', 0.78, 0.99), accuracy_sd=0.02, seeds=[0, 1, 2]),
              dict(row('PATE (public data, Confident-GNMax)', '', 0.6, 10.52, 100), answered=50, epsilon_answers=10.0,
                   epsilon_released=12.9, not_private=dict(epsilon_data_dependent=6.7, note='NOT private'),
                   command='python bench/utility.py --rows pate', machine='another machine')])))
    save_image_atomic(torch.rand(3, 12, 8), folder/'samples-toy-label-eps1.png')  # the data-mode grid is missing
    (folder/'utility-broken.json').write_text(json.dumps(dict(dataset='broken', rows=[dict(method='DPSD')])))
    return folder


@pytest.fixture(scope='module')
def toy(fixture): return load_results('toy', fixture)


def test_load_results(fixture, toy):
    check_eq([r['epsilon'] for r in toy['rows']][:4], [math.inf, 1.0, 9.99, math.inf])
    check_eq(toy['rows'][-1]['epsilon'], 10.52)
    check_fails(lambda: load_results('mnist', fixture), contains='python bench/utility.py --dataset mnist')
    check_fails(lambda: load_results('broken', fixture), contains='missing machine')
    check_eq(results_folder(fixture), fixture)  # the folder asked for, when it is there


def test_results_folder_clones_once_and_says_what_failed(tmp_path, monkeypatch):
    earlier = tmp_path/'earlier'
    (earlier/'bench'/'results').mkdir(parents=True)
    check_eq(results_folder(tmp_path/'none', clone=earlier), earlier/'bench'/'results')  # an earlier clone is reused, nothing fetched
    monkeypatch.setattr(data_module, 'REPOSITORY', str(tmp_path/'no-such-repository'))
    check_fails(lambda: results_folder(tmp_path/'none', clone=tmp_path/'fresh'), contains='open the notebook in a clone')
    (tmp_path/'stranger').mkdir()
    check_fails(lambda: results_folder(tmp_path/'none', clone=tmp_path/'stranger'), contains='is not a clone')
    assert (tmp_path/'stranger').is_dir()  # a folder that is not a clone is never removed


def test_results_table(toy):
    md = results_table(toy).data
    check_eq(md.count('\n| DPSD |'), 4)
    check_eq(steps_text({'private': 300, 'inf': 100}), 'DPSD steps: 300 (private), 100 (inf)'); check_eq(steps_text(3), '3 DPSD steps')
    assert '*Privacy unit:* one record, replace-one; delta = 1e-05.' in md, md
    assert '| 0.780 ± 0.020 (3) |' in md, md  # a row over three seeds
    assert '*Made by* `python bench/utility.py --rows pate` *on* another machine: PATE (public data, Confident-GNMax).' in md, md
    check_eq(cell_text(dict(accuracy=0.5), 'accuracy'), '0.5')


def test_tradeoff_figure(toy):
    fig = tradeoff_figure(toy)
    check_eq([t.name for t in fig.data], ['teachers (no privacy)', 'DPSD label', 'DPSD label, non-private', 'DPSD data', 'DP-SGD (Opacus)',
                                        'PATE (public data, Confident-GNMax)'])
    check_eq(list(fig.data[4].error_y.array), [0.02, 0])  # DP-SGD's spread at epsilon 0.99, none at 9.99
    check_eq(list(fig.data[1].x), [1.0, 9.99])  # sorted by epsilon
    check_eq(list(fig.data[2].y), [0.7, 0.7])  # a horizontal line
    check_eq(fig.layout.xaxis.type, 'log')


def test_pate_table(toy):
    check_eq(pate_table(dict(rows=toy['rows'][:2])), None)
    assert '| 50/100 | 10.5 | 10 | 12.9 | 6.7 | 0.6 |' in pate_table(toy).data


def shown(monkeypatch):
    "What the module displays, one object per item, instead of displaying it (pytest has no notebook front end)."
    items = []
    monkeypatch.setattr(results, 'display', lambda *objs: items.extend(objs))
    return items


def test_samples_and_show_results(fixture, toy, monkeypatch):
    check_eq([(t, e) for t, _, e in sample_files(toy, fixture)], [('DPSD label, epsilon 1', True), ('DPSD data, epsilon 10', False)])
    items = shown(monkeypatch)
    show_samples(toy, fixture)
    check_eq([type(o).__name__ for o in items], ['Markdown', 'Image', 'Markdown'])  # the grid there, then the missing one's title
    assert 'is missing' in items[2].data
    check_eq(show_results('mnist', fixture).data.startswith('no '), True)
    items.clear()
    check_eq(show_results('toy', fixture), None)
    check_eq([type(o).__name__ for o in items], ['Markdown', 'Figure', 'Markdown', 'Markdown', 'Markdown', 'Image', 'Markdown'])
