"The `dpsd-nb` console script, run as a user runs it: a subprocess, files on disk, exit codes."
import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPORT_KEYS = {'dataset', 'mode', 'mechanism', 'teachers', 'k', 'epsilon', 'delta', 'neighbour_relation', 'privacy_unit', 'noise',
               'queries', 'sigma', 'student_accuracy', 'synthetic_accuracy', 'not_private', 'seconds', 'device'}
NOT_PRIVATE_KEYS = {'note', 'teacher_accuracy', 'teacher_member_accuracy', 'mia_auc_teacher', 'mia_auc_student'}


def dpsd_nb(*args, timeout=600):
    return subprocess.run([sys.executable, '-m', 'dpsd_nb.cli', *args], capture_output=True, text=True, timeout=timeout)


def test_default_run_writes_a_complete_report(tmp_path):
    out = tmp_path/'run'
    done = dpsd_nb('run', '--quiet', '--out', str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads((out/'report.json').read_text())
    assert json.loads(done.stdout) == report
    assert REPORT_KEYS <= set(report), REPORT_KEYS - set(report)
    assert report['dataset'] == 'digits' and report['mode'] == 'label' and report['teachers'] == 20
    assert 0 < report['epsilon'] <= report['target_epsilon'] * (1 + 1e-9) and report['delta'] == 1e-5
    assert report['queries'] == 100 and report['sigma'] > 0
    assert 'replace-one' in report['privacy_unit'] and report['neighbour_relation'] == 'replace-one'
    assert report['noise'].startswith('secret') and 'noise_seed' not in report
    assert set(report['not_private']) == NOT_PRIVATE_KEYS and 'does NOT cover' in report['not_private']['note']
    # chance is 0.1 (360 test images, sd 0.016); the secret noise makes each run differ (0.17-0.33 on the validation half over six runs of the new and the old defaults)
    assert report['student_accuracy'] > 0.13, report
    assert (out/'samples.png').stat().st_size > 0 and (out/'student.pt').exists() and (out/'generator.pt').exists()


def test_interrupted_run_leaves_no_report(tmp_path):
    out = tmp_path/'run'
    proc = subprocess.Popen([sys.executable, '-m', 'dpsd_nb.cli', 'run', '--quiet', '--steps', '100000', '--out', str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            # a shell that runs the suite in the background ignores SIGINT, and children inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(20)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and 'interrupted; no report was written' in err.decode() and 'Traceback' not in err.decode(), err
    assert not (out/'report.json').exists()
    assert not list(out.glob('.*tmp*')) if out.exists() else True


def test_dpsgd_baseline(tmp_path):
    for name in ('generator.pt', 'samples.png', 'report.json'): (tmp_path/name).write_text('an earlier run')
    done = dpsd_nb('baseline', 'dpsgd', '--quiet', '--epsilon', '10', '--out', str(tmp_path))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path/'report.json').read_text())
    assert report['method'] == 'dpsgd' and 9.9 <= report['epsilon'] <= 10 and report['neighbour_relation'] == 'replace-one'
    assert set(report['not_private']) == {'note', 'mia_auc_student'} and report['noise'].startswith('secret')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['report.json', 'student.pt']  # nothing of the earlier run is left
    assert report['student_accuracy'] > 0.85, report


@pytest.mark.parametrize('args, says', [
    (['run', '--dataset', 'imagenet'], 'choose one of digits'),
    (['run', '--teachers', '-3'], '--teachers -3: the number of teachers'),
    (['run', '--teachers', '100000'], 'an integer in 1..1437'),
    (['run', '--epsilon', '0'], 'epsilon=0'),
    (['run', '--delta', '2'], 'delta=2.0'),
    (['run', '--k', '0'], 'k=0'),
    (['run', '--queries', '0'], 'queries=0'),
    (['run', '--dataset', 'fashion_mnist', '--root', '/nonexistent'], 'no data set files in /nonexistent/FashionMNIST/raw; add --download'),
    (['run', '--device', 'tpu'], "device='tpu'"),
    (['baseline', 'dpsgd', '--epsilon', '-2'], 'epsilon=-2'),
    (['fly'], 'invalid choice'),
])
def test_bad_options_exit_2_with_a_message(tmp_path, args, says):
    done = dpsd_nb(*args, '--out', str(tmp_path/'out')) if args[0] != 'fly' else dpsd_nb(*args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert says in done.stderr, done.stderr
    assert 'Traceback' not in done.stderr
    assert not (tmp_path/'out'/'report.json').exists()


def test_unusable_out_fails_before_training(tmp_path):
    (tmp_path/'taken').write_text('a file')
    env = {**os.environ, 'DPSD_NB_CACHE': str(tmp_path/'cache')}
    done = subprocess.run([sys.executable, '-m', 'dpsd_nb.cli', 'run', '--quiet', '--out', str(tmp_path/'taken')],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 2 and 'that is a file' in done.stderr and 'Traceback' not in done.stderr, done.stderr
    assert not (tmp_path/'cache').exists()  # refused before any teacher was trained (and cached)
    assert (tmp_path/'taken').read_text() == 'a file'


def test_version():
    done = dpsd_nb('--version')
    assert done.returncode == 0 and done.stdout.startswith('dpsd-nb 0.'), done.stdout


# Bad input that needs neither torch nor data is refused before torch is imported: one line, exit 2, nothing on disk.
# (What makes it fast is tested here, the import; how fast it is, `bench/cli.py` measures.)
NO_TORCH = ("import sys, dpsd_nb.cli as cli\n"
            "try: cli.main(sys.argv[1:])\n"
            "except SystemExit as e: code = e.code\n"
            "else: code = 0\n"
            "print('torch' in sys.modules, code)")

FAST_REFUSALS = {
    'out is a file': (['run', '--out', '{tmp}/taken'], 'that is a file'),
    'out not writable': (['run', '--out', '/proc/dpsd-nb-run'], 'cannot write there'),
    'out empty': (['run', '--out', ''], "--out '': name the output folder"),
    'out holds other files': (['run', '--out', '{tmp}/mine'], 'holds other files (notes.txt)'),
    'too many teachers': (['run', '--teachers', '100000', '--out', '{tmp}/o'], '--teachers 100000: the number of teachers must be an integer in 1..1437'),
    'too many teachers for mnist': (['run', '--dataset', 'mnist', '--download', '--teachers', '60001', '--out', '{tmp}/o'], 'in 1..60000'),
    'no data': (['run', '--dataset', 'cifar10', '--root', '{tmp}/nothing', '--out', '{tmp}/o'], 'add --download (needs internet), or --root'),
    'unknown data set': (['run', '--dataset', 'imagenet', '--out', '{tmp}/o'], 'choose one of digits, mnist, fashion_mnist, cifar10'),
    'nonprivate ignores --epsilon': (['baseline', 'nonprivate', '--epsilon', '1', '--out', '{tmp}/o'], 'leave --epsilon out'),
    'nonprivate ignores --epochs': (['baseline', 'nonprivate', '--epochs', '5', '--out', '{tmp}/o'], 'leave --epochs out'),
    'nonprivate ignores --noise-seed': (['baseline', 'nonprivate', '--noise-seed', '5', '--out', '{tmp}/o'], 'leave --noise-seed out'),
    'no noise to seed': (['run', '--epsilon', 'inf', '--noise-seed', '5', '--out', '{tmp}/o'], 'adds no noise to seed'),
    'dpsgd needs a finite epsilon': (['baseline', 'dpsgd', '--epsilon', 'inf', '--out', '{tmp}/o'], 'finite target epsilon'),
    'threads': (['run', '--threads', '0', '--out', '{tmp}/o'], '--threads 0: must be an integer >= 1'),
    'boundary': (['run', '--boundary', '1.5', '--out', '{tmp}/o'], '--boundary 1.5: a share in [0, 1)'),
    'ema': (['run', '--ema', '-0.1', '--out', '{tmp}/o'], '--ema -0.1: a share in [0, 1)'),
}

@pytest.mark.parametrize('case', list(FAST_REFUSALS))
def test_bad_input_refused_in_one_line_before_torch(tmp_path, case):
    args, says = FAST_REFUSALS[case]
    (tmp_path/'taken').write_text('a file'); (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'notes.txt').write_text('mine')
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    done = subprocess.run([sys.executable, '-c', NO_TORCH, *[a.format(tmp=tmp_path) for a in args]],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.stdout.split() == ['False', '2'], (done.stdout, done.stderr)  # torch never imported; exit code 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('dpsd-nb: error: ') and says in lines[0], done.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == before  # nothing created, nothing removed


def test_help_imports_no_torch():
    done = subprocess.run([sys.executable, '-c', NO_TORCH, '--help'], capture_output=True, text=True, timeout=60)
    assert 'usage: dpsd-nb' in done.stdout and done.stdout.split()[-2:] == ['False', '0'], done.stdout


def test_report_records_the_environment(tmp_path):
    out = tmp_path/'run'
    done = dpsd_nb('run', '--quiet', '--steps', '3', '--queries', '20', '--teacher-epochs', '2', '--threads', '1', '--out', str(out),
                   '--cache', str(tmp_path/'cache'))
    assert done.returncode == 0, done.stderr
    report = json.loads((out/'report.json').read_text())
    import torch, platform
    from dpsd_nb import __version__
    assert report['versions'] == {'dpsd_nb': __version__, 'torch': torch.__version__, 'python': platform.python_version()}
    assert report['threads'] == 1 and report['device'] == 'cpu'
    assert report['command'] == f"dpsd-nb run --quiet --steps 3 --queries 20 --teacher-epochs 2 --threads 1 --out {out} --cache {tmp_path/'cache'}"
    assert report['queries'] == 20 and report['batch'] == 10 and report['query_every'] == 1  # 2 query steps of 10 in 3 steps: every step


def test_default_budget_is_spread_over_the_run(tmp_path):
    "The default run (digits' recipe) asks its 100 queries in 10 batches of 10, every 20th of its 200 steps (the first at step 0)."
    import dpsd_nb.cli as cli
    args = cli.check_args(cli._parser().parse_args(['run', '--out', str(tmp_path/'o')]))
    assert (args.queries, args.batch, args.steps, args.query_every) == (None, None, None, None)  # left out: the recipe's, filled by plan_dpsd
    recipe, tcfg, privacy, cfg = cli.plan_dpsd(args)
    assert (privacy.queries, cfg.query_batch, cfg.steps, cfg.query_every) == (100, 10, 200, 20)
    assert len(range(0, cfg.steps, cfg.query_every)) * cfg.query_batch == privacy.queries


def test_each_data_set_gets_its_own_recipe(tmp_path):
    "MNIST's run takes MNIST's teachers (not digits' 20 x 100 epochs), and prints the recipe and its rough time before training."
    import dpsd_nb.cli as cli
    parse = lambda *a: cli.check_args(cli._parser().parse_args(['run', *a, '--out', str(tmp_path/'o')]))
    recipe, tcfg, privacy, cfg = cli.plan_dpsd(parse('--dataset', 'mnist', '--download'))
    assert (tcfg.teachers, tcfg.epochs, privacy.queries, cfg.denoise) == (250, 20, 3000, 4) and 'min for the teachers' in recipe.describe()
    recipe, tcfg, privacy, cfg = cli.plan_dpsd(parse('--dataset', 'mnist', '--download', '--teachers', '50', '--no-refit', '--steps', '10'))
    assert (tcfg.teachers, cfg.refit, cfg.steps, recipe.dataset) == (50, False, 10, 'mnist')  # flags given win over the recipe
    done = dpsd_nb('run', '--steps', '2', '--queries', '20', '--teacher-epochs', '1', '--threads', '1', '--out', str(tmp_path/'r'),
                   '--cache', str(tmp_path/'cache'))
    assert done.returncode == 0, done.stderr
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith('dpsd-nb: recipe digits at epsilon 10') and 'for the loop' in first, done.stderr
    report = json.loads((tmp_path/'r'/'report.json').read_text())
    assert report['recipe']['dataset'] == 'digits' and 'bench/improve.py' in report['recipe']['chosen'] and report['teacher_epochs'] == 1


def test_nonprivate_baseline_runs_the_noise_free_recipe(tmp_path):
    "`baseline nonprivate` is `run` without noise with the data set's noise-free recipe (it once crashed on a knob the recipe added)."
    done = dpsd_nb('baseline', 'nonprivate', '--quiet', '--threads', '1', '--out', str(tmp_path/'np'))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path/'np'/'report.json').read_text())
    assert report['method'] == 'nonprivate' and report['epsilon'] == 'inf' and report['queries'] == 20000
    assert report['recipe']['epsilon'] == 'inf' and report['boundary'] == 0 and 'not accounted' in report['recipe']['selection']
    assert report['student_accuracy'] > 0.7, report  # no noise: 0.91 on the validation half over three seeds (bench/results/utility-digits.json)
