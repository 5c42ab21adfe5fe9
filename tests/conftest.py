"""Shared fixtures: tiny datasets in the exact on-disk formats of the real ones (built by tiny_data.py).

The suite runs on the CPU wherever it runs, a GPU machine included: CUDA devices are hidden from it
(and from the processes it starts) before torch looks for them. DIVIDEMIX_TEST_CUDA=1 leaves them
visible, for tests/test_cuda.py, the checks only a GPU can make."""
import os

if os.environ.get('DIVIDEMIX_TEST_CUDA') != '1':
    os.environ['CUDA_VISIBLE_DEVICES'] = ''  # before torch initialises CUDA: every test, and every child, on the CPU
import pathlib
import shutil
import sys
import tempfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, 'tools')
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
CIFARN_DIR = os.path.join(SHARED, 'data', 'cifar-n')
FASHION_DIR = '/usr/share/datasets/fashion-mnist'
sys.path.insert(0, TOOLS)  # results.py, plots.py, gpu_check.py, tiny_data.py, ...
sys.path.insert(0, ROOT)   # the scripts, the copyable modules and dividemix_run

from tiny_data import (fine_to_coarse, make_cifar10, make_cifar100, make_clothing1m, make_fashion,  # noqa: E402,F401
                       make_webvision)

torch.set_num_threads(2)


@pytest.fixture
def ram_tmp(tmp_path):
    """A temporary folder in memory (/dev/shm) where the machine has one with room, else tmp_path: the
    real networks' checkpoints (WebVision's is ~870 MB: two InceptionResNetV2 and their momentum) are
    written without waiting for the disk's fsync (on the 2-core test machine 3.5 s against 0.9 s)."""
    base = '/dev/shm'
    if os.path.isdir(base) and os.access(base, os.W_OK) and shutil.disk_usage(base).free > 4e9:
        folder = tempfile.mkdtemp(dir=base, prefix='dividemix-test-')
        yield pathlib.Path(folder)
        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path


@pytest.fixture
def cifar10_dir(tmp_path):
    root = str(tmp_path / 'cifar-10-batches-py')
    make_cifar10(root)
    return root


@pytest.fixture(scope='module')
def cifar10_module_dir(tmp_path_factory):
    """One tiny CIFAR-10 folder shared by the tests of a module that only read it."""
    root = str(tmp_path_factory.mktemp('cifar10') / 'cifar-10-batches-py')
    make_cifar10(root)
    return root


@pytest.fixture
def cifar100_dir(tmp_path):
    root = str(tmp_path / 'cifar-100-python')
    make_cifar100(root)
    return root


@pytest.fixture
def fashion_dir(tmp_path):
    root = str(tmp_path / 'fashion')
    make_fashion(root)
    return root


def tiny_net(num_classes):
    """A stand-in for ResNet-50 / InceptionResNetV2 in the tests that are not about the model."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=8), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, num_classes))


@pytest.fixture
def tiny_models(monkeypatch):
    """Clothing1M and WebVision runs with tiny_net instead of their real networks."""
    import Train_clothing1M
    import Train_webvision
    monkeypatch.setattr(Train_clothing1M, 'create_model', lambda s, state=None: tiny_net(s.num_class))
    monkeypatch.setattr(Train_webvision, 'InceptionResNetV2', tiny_net)


def run_script(main, argv, capsys, errors=()):
    """A training script's main through cli.run_main, as its command line runs it: (exit status, captured
    stdout and stderr)."""
    from dividemix_run import cli
    try:
        cli.run_main(main, argv, data_errors=errors)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr()


def strict_json(text):
    """json.loads that refuses NaN and Infinity, as RFC 8259 and JavaScript's JSON.parse do."""
    import json

    def refuse(name):
        raise ValueError('not JSON: %s' % name)
    return json.loads(text, parse_constant=refuse)


def assert_strict_json(folder):
    """Every .json file and every line of every .jsonl file under folder parses as strict JSON; returns
    the parsed objects by file name."""
    parsed = {}
    for dirpath, _, names in os.walk(str(folder)):
        for name in names:
            path = os.path.join(dirpath, name)
            if name.endswith('.json'):
                parsed[name] = strict_json(open(path).read())
            elif name.endswith('.jsonl'):
                parsed[name] = [strict_json(line) for line in open(path) if line.strip()]
    assert parsed, 'no JSON output in %s' % folder
    return parsed
