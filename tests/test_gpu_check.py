"""gpu_check.py, the prepared GPU measurements, run for seconds on the CPU (--smoke), so that the one
GPU call cannot fail on a typo: every part must run, the summary must hold the tables, and what it
leaves in --out must be what the GPU machine returns (at most 8 files of at most 16 MiB, 2 folders deep)."""
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest

import gpu_check
from conftest import ROOT

CHEAP = 'bench_reference'  # a process (~5 s); every part in -m slow


def smoke(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != 'OUT'}
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'gpu_check.py')] + list(args) + [
        '--smoke', '--out', str(tmp_path / 'out')], cwd=str(tmp_path), capture_output=True, text=True, env=env,
        timeout=900)
    return done, str(tmp_path / 'out')


def check_out(out, phase):
    """What the GPU machine would return: every file of --out, its size and depth within the limits."""
    files = [os.path.join(folder, n) for folder, _, names in os.walk(out) for n in names]
    assert len(files) <= 8, files
    for f in files:
        assert os.path.getsize(f) < 16 * 2 ** 20 and os.path.relpath(f, out).count(os.sep) <= 2, f
    assert {os.path.basename(f) for f in files} >= {'summary_%s.md' % phase, 'summary_%s.json' % phase,
                                                   'logs_%s.tar.gz' % phase}
    from conftest import strict_json
    strict_json(open(os.path.join(out, 'summary_%s.json' % phase)).read())
    with tarfile.open(os.path.join(out, 'logs_%s.tar.gz' % phase)) as tar:
        names = tar.getnames()
    assert not any(n.endswith('.pth.tar') for n in names)  # no checkpoints
    return names


def check_parts(done, out, phase, names):
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(os.path.join(out, 'summary_%s.json' % phase)) as f:
        rows = json.load(f)['parts']
    assert [r['part'] for r in rows] == names
    assert all(r['status'] == 'ok' for r in rows), rows
    logs = check_out(out, phase)
    assert all('logs/%s.log' % name in logs for name in names)
    with open(os.path.join(out, 'summary_%s.md' % phase)) as f:
        return f.read()


def test_plan_fits_the_budget_by_construction():
    """The planned boxes sum to the budget (the GPU call's 510 s, the smoke run's 900 s), in priority
    order: the smoke runs and CUDA tests before the speed table, compile and scaling last."""
    names = [name for name, _ in gpu_check.SPEED_PLAN]
    for budget in (510, 900):
        boxes = gpu_check.scaled(gpu_check.SPEED_PLAN, budget)
        assert abs(sum(boxes.values()) - budget) < 1e-6 and set(boxes) == set(names)
    assert names.index('tests_cuda') < names.index('bench_reference') < names.index('breakdown') \
        < names.index('bench_compile') < names.index('scaling_cifar10')
    assert all(n.startswith('smoke_') for n in names[:names.index('tests_cuda')])


def test_a_part_past_its_box_is_killed_with_its_children_and_a_failure_is_shown(tmp_path, capsys):
    """A timed-out part's whole process group goes (a launcher's workers too); a part that fails prints
    its log's last lines; a part whose budget is spent is not started."""
    pid_file = str(tmp_path / 'grandchild.pid')
    spawn = ('import subprocess, sys, time; p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]); '
             'open(%r, "w").write(str(p.pid)); time.sleep(60)' % pid_file)
    parts = [gpu_check.Part('hangs', ['-c', spawn], 0),
             gpu_check.Part('fails', ['-c', 'import sys; print("the reason it failed"); sys.exit(3)'], 0),
             gpu_check.Part('late', ['-c', 'pass'], 0)]
    os.makedirs(str(tmp_path / 'logs'))
    t0 = time.time()
    rows = gpu_check.run_parts(parts, {'hangs': 4, 'fails': 20, 'late': 0}, str(tmp_path / 'logs'), t0)
    assert time.time() - t0 < 30
    assert rows[0]['status'].startswith('timed out') and rows[1]['status'] == 'failed (exit 3)'
    assert rows[2]['status'] == 'not run (budget spent)' or rows[2]['status'] == 'ok'
    pid = int(open(pid_file).read())
    time.sleep(0.5)
    assert not os.path.exists('/proc/%d' % pid) or open('/proc/%d/stat' % pid).read().split()[2] == 'Z'
    assert '|     the reason it failed' in capsys.readouterr().out


def test_speed_phase_smoke(tmp_path):
    """The driver with the reference benchmark config (every part, the smoke runs of the four scripts and
    their resumes, the CUDA tests in their dry form, the other configs, the breakdown, the compiled ones
    and the scaling ones, is in test_speed_phase_smoke_all_parts, -m slow): the table, the targets; what
    --out holds."""
    done, out = smoke(tmp_path, 'speed', '--parts', CHEAP)
    md = check_parts(done, out, 'speed', CHEAP.split(','))
    assert '| reference | ' in md and '| 1.00x |' in md
    assert 'target: post-warm-up epoch of the device pipeline (fp32) >= 5x the reference pipeline: nan' in md
    assert 'target: 301-epoch CIFAR-10 run < 1 hour' in md


@pytest.mark.slow
def test_speed_phase_smoke_all_parts(tmp_path):
    done, out = smoke(tmp_path, 'speed')
    md = check_parts(done, out, 'speed', [name for name, _ in gpu_check.SPEED_PLAN])
    assert '- torchrun --nproc_per_node 1 against the plain run (CIFAR smoke, epochs [0]): records identical' in md
    assert '| compile | ' in md and '| bf16_cl | ' in md and '| device | ' in md and '| deterministic | ' in md
    assert 'target: post-warm-up epoch of the device pipeline (fp32) >= 5x the reference pipeline: nan' not in md
    assert 'Where a post-warm-up epoch goes' in md and 'co-guess + co-refine (6 no-grad forwards)' in md
    for dataset in ('cifar10', 'clothing1m', 'webvision'):
        assert 'Projected scaling, %s' % dataset in md


def check_evidence(done, out, settings, work):
    parts = [name for label in settings for name in (label + '_dividemix', label + '_ce')]
    md = check_parts(done, out, 'evidence', parts)
    for label in settings:
        name = '%s %s%%' % (label[:-2], label[-2:])
        assert '| %s | DivideMix | 2 |' % name in md and '| %s | cross-entropy | 2 |' % name in md
    # both methods of a setting trained on the same noisy labels
    with open(os.path.join(work, 'evidence', 'fashionmnist_0.8_sym_dividemix_settings.json')) as f:
        a = json.load(f)
    with open(os.path.join(work, 'evidence', 'fashionmnist_0.8_sym_ce_settings.json')) as f:
        b = json.load(f)
    assert a['noise_file'] == b['noise_file'] and a['noise_rate'] == b['noise_rate'] and b['method'] == 'ce'
    assert os.path.getsize(os.path.join(out, 'evidence_acc.png')) > 1000


@pytest.mark.slow  # the phase of an ended issue: its driver shares run_parts' code with the speed phase
def test_evidence_phase_smoke(tmp_path):
    """The first pair (80% symmetric noise); both pairs in test_evidence_phase_smoke_both_settings (-m slow)."""
    done, out = smoke(tmp_path, 'evidence', '--parts', 'sym80_dividemix,sym80_ce', '--keep', str(tmp_path / 'work'))
    check_evidence(done, out, ['sym80'], str(tmp_path / 'work'))


@pytest.mark.slow
def test_evidence_phase_smoke_both_settings(tmp_path):
    done, out = smoke(tmp_path, 'evidence', '--keep', str(tmp_path / 'work'))
    check_evidence(done, out, ['sym80', 'asym40'], str(tmp_path / 'work'))
