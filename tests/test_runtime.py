"""runtime.Runtime: the GPU-oriented switches exercised on CPU tensors."""
import json
import os

import pytest
import torch

import cli
import runtime
import Train_cifar
from PreResNet import ResNet18


@pytest.mark.parametrize('precision, dtype', [('fp32', torch.float32), ('bf16', torch.bfloat16)])
def test_precision_contexts(precision, dtype):
    """What a forward under runtime.autocast() computes in: fp32 stays fp32, bf16 autocasts."""
    net = ResNet18(10, width=4)
    with runtime.Runtime('cpu', precision=precision).autocast():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.dtype == dtype


def test_channels_last_models_and_inputs():
    rt = runtime.Runtime('cpu', channels_last=True)
    net = rt.model(ResNet18(10, width=4))
    assert net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert rt.inputs(torch.randn(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)


def test_cuda_request_without_cuda_is_a_usage_error():
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is present')
    with pytest.raises(cli.UsageError, match='no CUDA device is available'):
        runtime.Runtime('cuda')


def test_compiled_net_dispatches_by_batch_size(monkeypatch):
    """Full batches go to the compiled module, ragged ones to the eager network: no recompiles."""
    calls = []

    def fake_compile(net, mode=None, dynamic=None):
        def compiled(x):
            calls.append(('compiled', x.size(0), mode, dynamic))
            return net(x)
        return compiled
    monkeypatch.setattr(torch, 'compile', fake_compile)
    net = ResNet18(10, width=4)
    rt = runtime.Runtime('cpu', compile=True, compile_mode='reduce-overhead')
    run = rt.runner(net, batch_sizes=(4, 8))
    run(torch.randn(4, 3, 32, 32))
    run(torch.randn(3, 3, 32, 32))
    run(torch.randn(8, 3, 32, 32))
    assert calls == [('compiled', 4, 'reduce-overhead', False), ('compiled', 8, 'reduce-overhead', False)]
    assert list(run.parameters()) == list(net.parameters())  # one set of weights
    run.eval()
    assert not net.training


class GraphPool(object):
    """Stands in for torch.compile(mode='reduce-overhead') on the CPU: like CUDA-graph trees,
    a replay's output lives in pool memory that the next replay of ANY compiled network
    reuses. Here the next call fills the earlier outputs with NaN (and bumps their autograd
    version, so a backward still pending through one would raise)."""

    def __init__(self):
        self.live, self.calls = [], []

    def compile(self, net, mode=None, dynamic=None, **kwargs):
        def replay(x):
            with torch.no_grad():
                for t in self.live:
                    t.fill_(float('nan'))
            out = net(x) * 1  # a fresh non-leaf tensor, as a graph output is
            self.live = [out]
            self.calls.append((x.size(0), mode, dynamic, torch.is_grad_enabled()))
            return out
        return replay


def test_compiled_outputs_overwritten_by_the_next_call_change_nothing(tmp_path, cifar10_dir, monkeypatch, capsys):
    """With CUDA graphs (--compile_mode reduce-overhead) every compiled forward's output is only
    valid until the next compiled forward. The algorithm must consume each output first: a run
    whose outputs are destroyed that way logs exactly what the eager run logs."""
    argv = ['--data_path', cifar10_dir, '--num_epochs', '2', '--warm_up', '1', '--width', '8',
            '--batch_size', '8', '--eval_batch_size', '40', '--num_workers', '0', '--train_subset', '96']
    stem = 'cifar10_0.5_sym'
    cli.run_main(Train_cifar.main, argv + ['--checkpoint_dir', str(tmp_path / 'eager')])
    pool = GraphPool()
    monkeypatch.setattr(torch, 'compile', pool.compile)
    cli.run_main(Train_cifar.main, argv + ['--checkpoint_dir', str(tmp_path / 'graphs'), '--compile',
                                                   '--compile_mode', 'reduce-overhead'])
    capsys.readouterr()
    # every shape the algorithm uses went through the "graphs": warm-up (2B), co-guess/co-refine (B),
    # the mixed forward (4B), eval_train and test (eval batch); static shapes, the mode passed on
    assert {c[0] for c in pool.calls} == {8, 16, 32, 40}
    assert {c[1:3] for c in pool.calls} == {('reduce-overhead', False)}
    assert {c[3] for c in pool.calls} == {True, False}
    for name in ('_acc.txt', '_stats.txt'):
        with open(str(tmp_path / 'eager' / (stem + name))) as a, open(str(tmp_path / 'graphs' / (stem + name))) as b:
            assert a.read() == b.read() != ''
    for k in (1, 2):
        a = torch.load(str(tmp_path / 'eager' / ('%s_net%d.pth.tar' % (stem, k))), weights_only=True)
        b = torch.load(str(tmp_path / 'graphs' / ('%s_net%d.pth.tar' % (stem, k))), weights_only=True)
        assert all(torch.equal(a[n], b[n]) for n in a)


def test_bf16_channels_last_run_end_to_end(tmp_path, cifar10_dir, capsys):
    ck = str(tmp_path / 'ck')
    cli.run_main(Train_cifar.main, ['--data_path', cifar10_dir, '--num_epochs', '1', '--warm_up', '1',
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
    cli.run_main(Train_cifar.main, ['--data_path', cifar10_dir, '--num_epochs', '1', '--warm_up', '1',
                                            '--width', '8', '--batch_size', '16', '--compile',
                                            '--checkpoint_dir', ck])
    assert len(open(os.path.join(ck, 'cifar10_0.5_sym_acc.txt')).read().splitlines()) == 2


def test_channels_last_gradients_match_nchw_at_the_smallest_allowed_width():
    """check_conv_width lets --width 8 through with channels_last on the CPU: the convolution it
    guards (PreResNet's first downsampling shortcut: 1x1, stride 2, `width` input channels) must
    then give the NCHW gradients. (At width 4 torch's CPU kernel hangs or gets them wrong.)"""
    torch.manual_seed(0)
    x = torch.randn(32, 8, 32, 32)
    w = torch.randn(16, 8, 1, 1)
    g = torch.randn(32, 16, 16, 16)
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        xx = x.clone(memory_format=fmt).requires_grad_()
        ww = w.clone(memory_format=fmt).requires_grad_()
        for _ in range(2):  # the faulty kernel failed on a repeated call
            xx.grad = ww.grad = None
            torch.nn.functional.conv2d(xx, ww, stride=2).backward(g.contiguous(memory_format=fmt))
        grads.append((xx.grad, ww.grad))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    with pytest.raises(cli.UsageError, match='--width 4 with --channels_last'):
        runtime.Runtime('cpu', channels_last=True).check_conv_width(4)
    runtime.Runtime('cpu', precision='bf16', channels_last=True).check_conv_width(4)  # another kernel: allowed
