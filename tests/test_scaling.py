"""scaling.py: the projection's arithmetic by hand, a smoke run on the CPU, its bad input, and the
measured sync-BN arithmetic being BatchNorm's for one process."""
import json
import math
import os

import pytest
import torch

from dividemix_run import distributed
import gpu_check
import scaling


def hand_measured():
    # Clothing1M-like: 23.5 M parameters, 53 BN layers; times chosen so every term is distinct
    return {'params': 23_500_000, 'bn_layers': 53, 'device': 'x',
            'step_s': {1: 0.100, 2: 0.060, 4: 0.040, 8: 0.030},
            'step_sync_bn_s': {2: 0.070, 4: 0.050, 8: 0.045},
            'eval_s': {32: 0.010, 16: 0.007, 8: 0.005, 4: 0.004, 1000: 0.300, 500: 0.160, 250: 0.090, 125: 0.050},
            'gmm_s': 0.25}


def test_projection_arithmetic_by_hand():
    spec = scaling.DATASETS['clothing1m']
    m = hand_measured()
    rows = scaling.project(spec, m, [1, 2, 4, 8], link_GBps=100.0, latency_us=10.0)
    steps = math.ceil(0.615 * 32000 / 32)
    assert [r['steps'] for r in rows] == [steps] * 4 == [615] * 4
    one, two = rows[0], rows[1]
    # one process: 2 nets x 615 steps x 100 ms; eval_train 2 x 1000 batches of 32; val 29 batches of 1000 (28,626
    # images, both nets); 2 GMMs; no communication
    assert one['comm_ms'] == 0 and one['step_ms'] == pytest.approx(100)
    assert one['epoch_s'] == pytest.approx(2 * 615 * 0.1 + 2 * 1000 * 0.010 + 29 * 0.3 + 0.5)
    assert one['speedup'] == pytest.approx(1.0)
    # two processes: the sync-BN step at b = 16; eval batches of 16 and 500; the GMM is not divided
    grads = 2 * (1 / 2) * 4 * 23.5e6
    rows_bytes = (1 / 2) * (4 * 32 * 3 * 224 * 224 * 4 + 2 * 32 * 4 * 14)
    comm = (grads + rows_bytes) / 100e9 + (6 * 53 + 6) * 10e-6
    assert two['b'] == 16 and two['step_ms'] == pytest.approx(70) and two['plain_bn_step_ms'] == pytest.approx(60)
    assert two['comm_ms'] == pytest.approx(1000 * comm)
    compute = 2 * 615 * 0.07 + 2 * 1000 * 0.007 + 29 * 0.16 + 0.5
    assert two['epoch_s'] == pytest.approx(compute)
    assert two['epoch_comm_s'] == pytest.approx(compute + 2 * 615 * comm)
    assert two['speedup'] == pytest.approx(one['epoch_s'] / (compute + 2 * 615 * comm))
    # decodes per process: per step 16 labeled + 16 unlabeled, both nets; half of 2 x 32,000 eval and 28,626 val
    assert two['decode_per_s'] == pytest.approx((2 * 615 * 32 + (64000 + 28626) / 2) / (compute + 2 * 615 * comm))
    assert rows[3]['b'] == 4 and rows[3]['test_s'] == pytest.approx(29 * 0.05)


def test_smoke_run_on_the_cpu(tmp_path):
    rows = scaling.main(['--dataset', 'cifar10', '--smoke', '--worlds', '2', '--out', str(tmp_path)])
    assert [(r['W'], r['b']) for r in rows] == [(1, 8), (2, 4)]  # one process is always the baseline
    with open(tmp_path / 'scaling_cifar10.json') as f:
        saved = json.load(f)
    m = saved['measured']
    from PreResNet import ResNet18
    assert m['params'] == sum(p.numel() for p in ResNet18(width=8).parameters()) and m['bn_layers'] == 17
    assert set(m['step_s']) == {'1', '2'} and set(m['step_sync_bn_s']) == {'2'}
    assert all(v > 0 for d in ('step_s', 'step_sync_bn_s', 'eval_s') for v in m[d].values()) and m['gmm_s'] > 0
    md = (tmp_path / 'scaling_cifar10.md').read_text()
    assert md.splitlines()[2].startswith('| 1 | 8 | ') and md.splitlines()[3].startswith('| 2 | 4 | ')
    assert 'Assumed link: 300 GB/s bus bandwidth, 20 us per collective, no overlap.' in md


@pytest.mark.parametrize('args, message', [
    (['--worlds', '3'], '--worlds 3: the global batch 8 must split evenly over every process count'),
    (['--worlds', '1,two'], "--worlds '1,two': give process counts separated by commas"),
    (['--link_GBps', 'nan'], '--link_GBps nan is not a finite number'),
    (['--steps', '0'], '--steps 0 is outside [1, inf)'),
])
def test_bad_input_exit_2(args, message, capsys):
    from dividemix_run.cli import run_main
    with pytest.raises(SystemExit) as e:
        # as `python scaling.py ARGS` runs it (--smoke: were a check missing, the run would end in seconds)
        run_main(scaling.main, args + ['--smoke', '--dataset', 'cifar10'])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_measured_sync_bn_arithmetic_is_batchnorm_for_one_process():
    """The sync-BN step that scaling.py times runs GlobalBatchNorm's arithmetic (its all-reduce of one process's
    statistics): the same outputs, gradients and running statistics as BatchNorm."""
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    local = distributed._convert(__import__('copy').deepcopy(plain), scaling.LocalGlobalBatchNorm)
    assert isinstance(local[1], scaling.LocalGlobalBatchNorm)
    calls = []
    all_sum = scaling.LocalGlobalBatchNorm._all_sum
    local[1]._all_sum = lambda stats: calls.append(stats.shape) or all_sum(local[1], stats)
    x = torch.randn(6, 3, 9, 9)
    outs = []
    for net in (plain, local):
        net.train()
        y = net(x)
        (y ** 2).mean().backward()
        outs.append((y.detach(), net[0].weight.grad.clone(), net[1].running_mean.clone(), net[1].running_var.clone()))
    assert calls == [(2 * 4 + 1,)]  # the sync-BN path ran: (sum, sum of squares, count) of 4 channels summed once
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_gpu_check_scaling_parts_parse():
    """The arguments gpu_check passes to scaling.py, on the GPU and in the smoke run, are accepted."""
    import argparse
    for smoke in (False, True):
        args = argparse.Namespace(smoke=smoke, out='/tmp/x', workers=12)
        data = {'cifar10': 'c', 'clothing': 'k', 'webvision': 'w', 'folder': 'f'}
        parts = [p for p in gpu_check.speed_parts(args, data, '/tmp/work') if p.name.startswith('scaling_')]
        assert [p.name for p in parts] == ['scaling_cifar10', 'scaling_clothing1m', 'scaling_webvision']
        for part in parts:
            assert part.argv[0] == os.path.join('tools', 'scaling.py')
            parsed, spec, worlds = scaling.parse_args(part.argv[1:])
            assert parsed.device == ('cpu' if smoke else 'cuda') and worlds == ([1, 2] if smoke else [1, 2, 4, 8])
