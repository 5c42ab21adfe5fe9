"""`pip install .` from a clone: the copyable modules and the scripts import from any folder, no generic
module name (cli, run, logs, results, ...) lands in site-packages, and the scripts run after the install.
Installed without dependencies into a fresh virtual environment that sees this one's packages."""
import os
import shutil
import site
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT

GENERIC = ('cli', 'run', 'runtime', 'logs', 'checkpoints', 'distributed', 'data_sources', 'device_data', 'results',
           'plots', 'paper', 'pretrained', 'label_issues', 'resume', 'lock', 'signals', 'tiny_data', 'benchmark')


def test_pip_install_then_import_and_run_from_elsewhere(tmp_path):
    src = str(tmp_path / 'clone')  # a copy: the build leaves build/ and *.egg-info where it runs
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns('.git', '.venv*', 'tests', 'checkpoint', '__pycache__',
                                                             'build', '*.egg-info', '.gpu_data', 'demo_output'))
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True, timeout=120)
    python = str(venv / 'bin' / 'python')
    # this environment's packages (torch, ...) seen from the new one, as if installed there already
    purelib = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                             capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(purelib, 'outer.pth'), 'w') as f:
        f.write('\n'.join(site.getsitepackages() + [sysconfig.get_paths()['purelib']]) + '\n')
    done = subprocess.run([sys.executable, '-m', 'pip', '--python', python, 'install', '-q', '--no-deps',
                           '--no-build-isolation', '--no-index', src], capture_output=True, text=True, timeout=300)
    if 'no such option: --python' in done.stderr:
        pytest.skip('pip older than 22.3 (no --python)')
    assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = str(tmp_path / 'elsewhere')
    os.makedirs(elsewhere)
    check = ('import importlib.util as u, os, dividemix, dataloader_cifar, dividemix_run.cli\n'
             'from PreResNet import ResNet18\n'
             'import Train_cifar\n'
             'print(os.path.dirname(dividemix.__file__))\n'
             'print(",".join(m for m in %r if u.find_spec(m) is not None))\n' % (GENERIC,))
    out = subprocess.run([python, '-c', check], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
    assert out.returncode == 0, out.stderr[-2000:]
    where, generic = out.stdout.splitlines()
    assert where == purelib and generic == ''  # from site-packages, and no generic module name there
    # a script's command (`python -m Train_cifar` runs the same module, imported above)
    ran = subprocess.run([str(venv / 'bin' / 'dividemix-cifar'), '--help'], cwd=elsewhere, capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0 and ran.stdout.startswith('usage: dividemix-cifar'), ran.stderr[-2000:]
