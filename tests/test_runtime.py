"""train_utils.Runtime: the GPU-oriented switches exercised on CPU tensors."""
import json
import os

import pytest
import torch

import train_utils
import Train_cifar
from PreResNet import ResNet18


def test_precision_contexts():
    rt = train_utils.Runtime('cpu', precision='fp32')
    with rt.autocast():
        assert not torch.is_autocast_enabled('cpu')
    rt = train_utils.Runtime('cpu', precision='bf16')
    net = ResNet18(10, width=4)
    with rt.autocast():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.dtype == torch.bfloat16


def test_channels_last_models_and_inputs():
    rt = train_utils.Runtime('cpu', channels_last=True)
    net = rt.model(ResNet18(10, width=4))
    assert net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert rt.inputs(torch.randn(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)


def test_cuda_request_without_cuda_is_a_usage_error():
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is present')
    with pytest.raises(train_utils.UsageError, match='no CUDA device is available'):
        train_utils.Runtime('cuda')


def test_compiled_net_dispatches_by_batch_size(monkeypatch):
    """Full batches go to the compiled module, ragged ones to the eager network: no recompiles."""
    calls = []

    def fake_compile(net, mode=None):
        def compiled(x):
            calls.append(('compiled', x.size(0), mode))
            return net(x)
        return compiled
    monkeypatch.setattr(torch, 'compile', fake_compile)
    net = ResNet18(10, width=4)
    rt = train_utils.Runtime('cpu', compile=True, compile_mode='reduce-overhead')
    run = rt.runner(net, batch_sizes=(4, 8))
    run(torch.randn(4, 3, 32, 32))
    run(torch.randn(3, 3, 32, 32))
    run(torch.randn(8, 3, 32, 32))
    assert calls == [('compiled', 4, 'reduce-overhead'), ('compiled', 8, 'reduce-overhead')]
    assert list(run.parameters()) == list(net.parameters())  # one set of weights
    run.eval()
    assert not net.training


def test_bf16_channels_last_run_end_to_end(tmp_path, cifar10_dir, capsys):
    ck = str(tmp_path / 'ck')
    train_utils.run_main(Train_cifar.main, ['--data_path', cifar10_dir, '--num_epochs', '1', '--warm_up', '1',
                                            '--width', '4', '--batch_size', '16', '--precision', 'bf16',
                                            '--channels_last', '--checkpoint_dir', ck])
    recs = [json.loads(l) for l in open(os.path.join(ck, 'cifar10_0.5_sym_log.jsonl'))]
    assert recs[1]['Lx1'] == recs[1]['Lx1'] and 0 <= recs[1]['test_acc'] <= 100  # finite, no NaN
    with open(os.path.join(ck, 'cifar10_0.5_sym_settings.json')) as f:
        assert json.load(f)['precision'] == 'bf16'


@pytest.mark.slow
def test_real_torch_compile_on_cpu(tmp_path, cifar10_dir):
    """torch.compile (inductor) end to end on the CPU: minutes, so not in the default run."""
    ck = str(tmp_path / 'ck')
    train_utils.run_main(Train_cifar.main, ['--data_path', cifar10_dir, '--num_epochs', '1', '--warm_up', '1',
                                            '--width', '4', '--batch_size', '16', '--compile',
                                            '--checkpoint_dir', ck])
    assert len(open(os.path.join(ck, 'cifar10_0.5_sym_acc.txt')).read().splitlines()) == 2
