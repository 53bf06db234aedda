"The `dpsd-nb` console script, run as a user runs it."
import json
import subprocess
import sys

import pytest


def dpsd_nb(*args, timeout=300):
    return subprocess.run([sys.executable, '-m', 'dpsd_nb.cli', *args], capture_output=True, text=True, timeout=timeout)


def test_default_run_reports_a_good_teacher():
    done = dpsd_nb('run', '--quiet')
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report['dataset'] == 'digits' and report['teachers'] == 1
    assert report['teacher_accuracy'] >= 0.97
    assert report['device'] == 'cpu'


@pytest.mark.parametrize('args, says', [
    (['run', '--dataset', 'imagenet'], 'choose one of digits'),
    (['run', '--teachers', '-3'], 'teachers=-3'),
    (['run', '--teachers', '1000'], 'choose M <='),
    (['run', '--dataset', 'fashion_mnist', '--root', '/nonexistent'], '/nonexistent/FashionMNIST/raw'),
    (['run', '--device', 'tpu'], 'device'),
    (['fly'], 'invalid choice'),
])
def test_bad_options_exit_2_with_a_message(args, says):
    done = dpsd_nb(*args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert says in done.stderr, done.stderr
    assert 'Traceback' not in done.stderr
