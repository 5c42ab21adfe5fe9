"""gpu_check.py, the prepared GPU measurements, run for seconds on the CPU (--smoke), so that the one
GPU call cannot fail on a typo: every part must run and the summary must hold the tables."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

CHEAP = 'bench_reference,breakdown'  # a process each (~5 s); the rest in -m slow



def smoke(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != 'OUT'}
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'gpu_check.py')] + list(args) + [
        '--smoke', '--out', str(tmp_path / 'out')], cwd=str(tmp_path), capture_output=True, text=True, env=env,
        timeout=600)
    return done, str(tmp_path / 'out')


def check_parts(done, out, phase, names):
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(os.path.join(out, 'summary_%s.json' % phase)) as f:
        rows = json.load(f)['parts']
    assert [r['part'] for r in rows] == names
    assert all(r['status'] == 'ok' for r in rows), rows
    with open(os.path.join(out, 'summary_%s.md' % phase)) as f:
        return f.read()


def test_speed_phase_smoke(tmp_path):
    """The driver with the reference benchmark config and the breakdown (of the device config; every
    part, the smoke runs of the three scripts and their resumes, the other configs, the compiled ones
    and the scaling ones too, is in test_speed_phase_smoke_all_parts, -m slow): the table, the targets,
    the breakdown."""
    done, out = smoke(tmp_path, 'speed', '--parts', CHEAP)
    md = check_parts(done, out, 'speed', CHEAP.split(','))
    assert '| reference | ' in md and '| 1.00x |' in md
    assert 'target: post-warm-up epoch of the device pipeline (fp32) >= 5x the reference pipeline: nan' in md
    assert 'target: 301-epoch CIFAR-10 run < 1 hour' in md
    assert 'Where a post-warm-up epoch goes' in md and 'co-guess + co-refine (6 no-grad forwards)' in md


@pytest.mark.slow
def test_speed_phase_smoke_all_parts(tmp_path):
    done, out = smoke(tmp_path, 'speed')
    md = check_parts(done, out, 'speed', ['smoke_cifar', 'smoke_cifar_resume', 'smoke_clothing', 'smoke_clothing_resume',
                                          'smoke_webvision', 'smoke_webvision_resume', 'smoke_cifar_bf16_cl',
                                          'smoke_cifar_torchrun', 'bench_reference', 'bench_device', 'bench_bf16_cl',
                                          'breakdown', 'smoke_cifar_compile', 'bench_compile', 'scaling_cifar10',
                                          'scaling_clothing1m', 'scaling_webvision'])
    assert '- torchrun --nproc_per_node 1 against the plain run (CIFAR smoke, epochs [0]): records identical' in md
    assert '| compile | ' in md and '| bf16_cl | ' in md and '| device | ' in md
    assert 'target: post-warm-up epoch of the device pipeline (fp32) >= 5x the reference pipeline: nan' not in md
    for dataset in ('cifar10', 'clothing1m', 'webvision'):
        assert 'Projected scaling, %s' % dataset in md
    with open(os.path.join(out, 'runs', 'cifar', 'cifar10_0.5_sym_log.jsonl')) as f:  # the resume added epoch 1
        assert [json.loads(l).get('epoch') for l in f if '"epoch"' in l] == [0, 1]


def check_evidence(done, out, settings):
    parts = [name for label in settings for name in (label + '_dividemix', label + '_ce')]
    md = check_parts(done, out, 'evidence', parts)
    for label in settings:
        name = '%s %s%%' % (label[:-2], label[-2:])
        assert '| %s | DivideMix | 2 |' % name in md and '| %s | cross-entropy | 2 |' % name in md
    # both methods of a setting trained on the same noisy labels
    with open(os.path.join(out, 'evidence', 'fashionmnist_0.8_sym_dividemix_settings.json')) as f:
        a = json.load(f)
    with open(os.path.join(out, 'evidence', 'fashionmnist_0.8_sym_ce_settings.json')) as f:
        b = json.load(f)
    assert a['noise_file'] == b['noise_file'] and a['noise_rate'] == b['noise_rate'] and b['method'] == 'ce'
    assert os.path.getsize(os.path.join(out, 'evidence_acc.png')) > 1000


def test_evidence_phase_smoke(tmp_path):
    """The first pair (80% symmetric noise); both pairs in test_evidence_phase_smoke_both_settings (-m slow)."""
    done, out = smoke(tmp_path, 'evidence', '--parts', 'sym80_dividemix,sym80_ce')
    check_evidence(done, out, ['sym80'])


@pytest.mark.slow
def test_evidence_phase_smoke_both_settings(tmp_path):
    done, out = smoke(tmp_path, 'evidence')
    check_evidence(done, out, ['sym80', 'asym40'])
