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
    assert report['student_accuracy'] > 0.2, report  # chance is 0.1
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
    (['run', '--teachers', '-3'], 'teachers=-3'),
    (['run', '--teachers', '100000'], 'an integer in 1..1437'),
    (['run', '--epsilon', '0'], 'epsilon=0'),
    (['run', '--delta', '2'], 'delta=2.0'),
    (['run', '--k', '0'], 'k=0'),
    (['run', '--queries', '0'], 'queries=0'),
    (['run', '--dataset', 'fashion_mnist', '--root', '/nonexistent'], '/nonexistent/FashionMNIST/raw'),
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
