"""Fashion-MNIST and CIFAR-10 end to end, offline: the tests write small data sets in torchvision's own on-disk formats and
load them through `dpsd_nb.data.load_dataset`, train on them, and run the CLI on them.

torchvision checks the md5 sums of the CIFAR-10 files against those of the real files, which written files cannot match.
`trust_cifar10` replaces only that table of expected sums (`CIFAR10.train_list`, `test_list`, `meta`) by the sums of the
files the test wrote: torchvision's own code still checks them, then parses the pickles; nothing else is patched.
Fashion-MNIST needs no patch: torchvision checks only that its unpacked files exist.
"""
import gzip
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision
from torchvision.datasets.utils import calculate_md5

from dpsd_nb.data import load_dataset
from dpsd_nb.distill import DistillConfig, Distiller, PrivacyConfig
from dpsd_nb.evaluate import sample_grid
from dpsd_nb.teachers import TeacherConfig, train_teachers

FASHION = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
CIFAR = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')
N_TRAIN, N_TEST = 40, 20  # CIFAR-10: 8 records in each of the 5 train batches


def images(n, shape, seed):
    "uint8 images with every value 0..255 possible and no symmetry: a transposed or reordered copy differs."
    x = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
    x.reshape(n, -1)[:, :2] = (0, 255)  # both ends of the range in every image
    return x


def labels(n, seed): return np.random.default_rng(seed).permutation(np.arange(n) % 10).astype(np.uint8)


def idx_bytes(a:np.ndarray) -> bytes:
    "The IDX format of MNIST: magic 2051 (images, 3 dimensions) or 2049 (labels, 1), big-endian uint32 sizes, then the bytes."
    magic = {3: 2051, 1: 2049}[a.ndim]
    return np.array([magic, *a.shape], dtype='>u4').tobytes() + a.tobytes()


def write_fashion(root:Path, compress=False) -> dict:
    "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte under `root` (or their .gz, as torchvision downloads them)."
    raw = root/'FashionMNIST'/'raw'; raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, n, seed in (('train', 'train', N_TRAIN, 1), ('test', 't10k', N_TEST, 2)):
        x, y = images(n, (28, 28), seed), labels(n, seed)
        for kind, a in (('images-idx3', x), ('labels-idx1', y)):
            name = f'{prefix}-{kind}-ubyte'
            if compress: (raw/f'{name}.gz').write_bytes(gzip.compress(idx_bytes(a)))
            else: (raw/name).write_bytes(idx_bytes(a))
        written[split] = (x, y)
    return written


def write_cifar10(root:Path) -> dict:
    "cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: pickled dicts, data uint8 (n, 3072) row-major CHW."
    folder = root/'cifar-10-batches-py'; folder.mkdir(parents=True, exist_ok=True)
    x, y = images(N_TRAIN + N_TEST, (3, 32, 32), 3), labels(N_TRAIN + N_TEST, 3)
    batches = [(f'data_batch_{i + 1}', slice(8 * i, 8 * (i + 1))) for i in range(5)] + [('test_batch', slice(N_TRAIN, None))]
    # the real files are Python 2 pickles whose str keys torchvision's pickle.load(encoding='latin1') reads as str
    for name, s in batches:
        batch = {'batch_label': name, 'labels': y[s].tolist(), 'data': x[s].reshape(-1, 3072),
                 'filenames': [f'{i}.png' for i in range(s.start, s.stop or len(x))]}
        (folder/name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder/'batches.meta').write_bytes(pickle.dumps({'num_cases_per_batch': 8, 'label_names': list(CIFAR), 'num_vis': 3072}, protocol=2))
    return {'train': (x[:N_TRAIN], y[:N_TRAIN]), 'test': (x[N_TRAIN:], y[N_TRAIN:])}


def trust_cifar10(root:Path) -> dict:
    "torchvision's tables of expected CIFAR-10 md5 sums, with the sums of the files under `root` (see the module docstring)."
    folder, c = Path(root)/'cifar-10-batches-py', torchvision.datasets.CIFAR10
    return {'train_list': [[f, calculate_md5(folder/f)] for f, _ in c.train_list],
            'test_list': [[f, calculate_md5(folder/f)] for f, _ in c.test_list],
            'meta': {**c.meta, 'md5': calculate_md5(folder/c.meta['filename'])}}


@pytest.fixture
def fashion(tmp_path): return tmp_path, write_fashion(tmp_path)


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path)
    for k, v in trust_cifar10(tmp_path).items(): monkeypatch.setattr(torchvision.datasets.CIFAR10, k, v)
    return tmp_path, written


def pixel(v:torch.Tensor) -> int:
    "A normalized model input back as the uint8 pixel it came from."
    return round((v.item() * 0.5 + 0.5) * 255)


def check_round_trip(data, written, shape):
    "Shapes, dtypes, range, and every pixel and label exactly as written (pixels in CHW order)."
    for split, (x, y) in written.items():
        xs, ys = getattr(data, split).tensors
        assert xs.shape == (len(x), *shape) and xs.dtype == torch.float32 and ys.dtype == torch.long
        assert xs.min() == -1 and xs.max() == 1  # (pixel / 255 - 0.5) / 0.5
        expected = torch.from_numpy(x.reshape(len(x), *shape).astype(np.float32))
        torch.testing.assert_close(xs, (expected / 255 - 0.5) / 0.5, rtol=0, atol=1e-6)  # within 1/255 of a pixel: exact
        assert ys.tolist() == y.tolist()


def test_fashion_mnist_loads_from_torchvision_files(fashion):
    root, written = fashion
    data = load_dataset('fashion-mnist', root=root)
    assert data.info.name == 'fashion_mnist' and data.info.shape == (1, 28, 28) and data.info.classes == FASHION
    assert (len(data.train), len(data.test)) == (N_TRAIN, N_TEST)
    check_round_trip(data, written, (1, 28, 28))
    x, _ = written['train']
    assert pixel(data.train.tensors[0][3, 0, 1, 2]) == x[3, 1, 2] != x[3, 2, 1]  # row 1, column 2: not transposed


def test_cifar10_loads_from_torchvision_files(cifar):
    root, written = cifar
    data = load_dataset('cifar10', root=root)
    assert data.info.name == 'cifar10' and data.info.shape == (3, 32, 32) and data.info.channels == 3 and data.info.classes == CIFAR
    assert tuple(torchvision.datasets.CIFAR10(str(root)).classes) == CIFAR  # the meta file we wrote reads as torchvision's
    assert (len(data.train), len(data.test)) == (N_TRAIN, N_TEST)
    check_round_trip(data, written, (3, 32, 32))
    x, _ = written['train']  # record 13 is the 6th of data_batch_2: the batches are read in order
    for c, h, w in ((0, 1, 2), (1, 5, 30), (2, 31, 0)):  # channel c, row h, column w as written (CHW)
        assert pixel(data.train.tensors[0][13, c, h, w]) == x[13, c, h, w]


def test_cifar10_with_the_real_checksums_is_refused(tmp_path):
    "Without `trust_cifar10`, torchvision's md5 check refuses the written files: the patch is what lets them through."
    write_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match='cifar-10-batches-py'): load_dataset('cifar10', root=tmp_path)


@pytest.mark.parametrize('name', ['fashion_mnist', 'cifar10'])
def test_the_loop_on_each(name, fashion, cifar):
    "Teachers, a short DPSD run and a sample grid on 1- and 3-channel images."
    data = load_dataset(name, root=fashion[0])  # both fixtures write into the same tmp_path
    teachers = train_teachers(data, TeacherConfig(teachers=2, epochs=1, width=4, hidden=8), progress=False)
    d = Distiller(data.info, teachers, PrivacyConfig(epsilon=10., queries=20),
                  DistillConfig(steps=3, query_batch=10, student_batch=16, student_steps=1, generator_batch=10, final_steps=2)).fit()
    x = data.test.tensors[0]
    assert d.student(x).shape == (len(x), 10)
    assert d.queries == 20 and 0 < d.epsilon <= 10 * (1 + 1e-9)
    grid = sample_grid(d.generator, data.info, per_class=4, student=d.student)
    h, w = data.info.shape[1:]
    assert grid.shape == (3, 10 * (h + 3) + 1, 4 * (w + 3) + 1)  # 10 rows of 4, each framed (+2) and padded (+1)
    assert 0 <= grid.min() and grid.max() <= 1


WRAPPER = """import sys
sys.path.insert(0, {tests!r})
import torchvision
from test_datasets import trust_cifar10
from dpsd_nb.cli import main
for k, v in trust_cifar10({root!r}).items(): setattr(torchvision.datasets.CIFAR10, k, v)
sys.exit(main(sys.argv[1:]))
"""


def test_cli_runs_on_cifar10(cifar):
    root, _ = cifar
    wrapper = root/'dpsd_nb_trusting_written_cifar.py'  # the CLI, with the checksums of the written files (module docstring)
    wrapper.write_text(WRAPPER.format(tests=str(Path(__file__).parent), root=str(root)))
    done = subprocess.run([sys.executable, str(wrapper), 'run', '--dataset', 'cifar10', '--root', str(root), '--teachers', '2',
                           '--teacher-epochs', '1', '--steps', '3', '--batch', '10', '--queries', '20', '--final-steps', '2',
                           '--quiet', '--out', str(root/'out'), '--cache', str(root/'cache')],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((root/'out'/'report.json').read_text())
    assert report['dataset'] == 'cifar10' and 0 < report['epsilon'] <= report['target_epsilon'] * (1 + 1e-9)
    assert (root/'out'/'samples.png').stat().st_size > 0


def test_cli_download_offline_fails_in_one_line(tmp_path):
    offline = {k: 'http://127.0.0.1:9' for k in ('HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy', 'http_proxy')}  # port 9: discard
    env = {k: v for k, v in os.environ.items() if k.lower() != 'no_proxy'} | offline
    root = tmp_path/'data'
    done = subprocess.run([sys.executable, '-m', 'dpsd_nb.cli', 'run', '--dataset', 'cifar10', '--download', '--root', str(root),
                           '--teachers', '2', '--teacher-epochs', '1', '--steps', '1', '--quiet', '--out', str(tmp_path/'out')],
                          capture_output=True, text=True, timeout=120, env=env)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith('dpsd-nb: error: cifar10: the download failed (') and '--root' in lines[0] and 'Traceback' not in done.stderr
    assert f'{root}/cifar-10-batches-py/' in lines[0] and '$DPSD_NB_DATA' in lines[0]
    assert list(root.iterdir()) == []  # no half-downloaded archive, no empty folder


def serve_fashion(tmp_path:Path, cut_after:int|None=None, error:BaseException|None=None):
    """A stand-in for torchvision's `download_url` that serves written .gz files, and what they hold; after `cut_after` files
    it writes half of the next one and raises `error`, as a dropped connection or Ctrl-C would."""
    written = write_fashion(tmp_path/'served', compress=True)
    served = tmp_path/'served'/'FashionMNIST'/'raw'
    calls = []
    def download_url(url, root, filename=None, md5=None):
        data = (served/filename).read_bytes()
        if cut_after is not None and len(calls) >= cut_after:
            (Path(root)/filename).write_bytes(data[:len(data) // 2]); raise error
        calls.append(filename); (Path(root)/filename).write_bytes(data)
    return download_url, written


def test_download_moves_complete_files_into_place(tmp_path, monkeypatch):
    download_url, written = serve_fashion(tmp_path)
    monkeypatch.setattr(torchvision.datasets.utils, 'download_url', download_url)  # torchvision unpacks and loads as usual
    root = tmp_path/'data'
    check_round_trip(load_dataset('fashion_mnist', root=root, download=True), written, (1, 28, 28))
    assert [p.name for p in root.iterdir()] == ['FashionMNIST']  # the temporary folder is gone
    assert {p.name for p in (root/'FashionMNIST'/'raw').iterdir()} >= {'train-images-idx3-ubyte', 't10k-labels-idx1-ubyte'}
    check_round_trip(load_dataset('fashion_mnist', root=root), written, (1, 28, 28))  # from the moved files, without download


@pytest.mark.parametrize('error', [URLError(ConnectionResetError(104, 'Connection reset by peer')), KeyboardInterrupt()])
def test_interrupted_download_leaves_nothing_under_root(tmp_path, monkeypatch, error):
    "Three files downloaded and unpacked, half of the fourth: none of them reaches `root`, so nothing there looks complete."
    monkeypatch.setattr(torchvision.datasets.utils, 'download_url', serve_fashion(tmp_path, 3, error)[0])
    root = tmp_path/'data'
    with pytest.raises(FileNotFoundError if isinstance(error, URLError) else KeyboardInterrupt) as e:
        load_dataset('fashion_mnist', root=root, download=True)
    if isinstance(error, URLError):
        assert str(e.value).startswith('fashion_mnist: the download failed ([Errno 104] Connection reset by peer). ')
        assert '\n' not in str(e.value) and e.value.__suppress_context__
    assert list(root.iterdir()) == []
    with pytest.raises(FileNotFoundError, match='no data set files'): load_dataset('fashion_mnist', root=root)
