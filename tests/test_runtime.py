"""runtime.Runtime: the GPU-oriented switches exercised on CPU tensors."""
import json
import os

import pytest
import torch

from dividemix_run import cli
from dividemix_run import runtime
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


def test_suite_is_pinned_to_the_cpu():
    """Tests run on the CPU wherever they run: conftest.py hides CUDA devices from the suite and from the
    processes it starts (on a GPU machine the 2-process tests would otherwise pick NCCL, one GPU for
    two ranks). gpu_check.py runs this test on the GPU machine."""
    if os.environ.get('DIVIDEMIX_TEST_CUDA') == '1':
        pytest.skip('DIVIDEMIX_TEST_CUDA=1 leaves the GPUs visible')
    assert os.environ['CUDA_VISIBLE_DEVICES'] == '' and torch.cuda.device_count() == 0
    import subprocess
    import sys
    child = subprocess.run([sys.executable, '-c', 'import torch; print(torch.cuda.device_count())'],
                           capture_output=True, text=True)
    assert child.stdout.strip() == '0'


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
    argv = ['--data_path', cifar10_dir, '--num_epochs', '2', '--warm_up', '1', '--arch', 'cnn', '--width', '8',
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


# ---------------------------------------------------------------- CUDA readiness, checked on the CPU

def test_precision_tf32_is_cuda_only_and_fp32_turns_tf32_off(capsys, tmp_path, cifar10_dir):
    """--precision fp32 is IEEE fp32 on CUDA too (TensorFloat-32 off: PyTorch's default runs cuDNN
    convolutions in TF32); tf32 asks for it, and is refused on the CPU, where it means nothing."""
    with pytest.raises(cli.UsageError, match='--precision tf32 is a CUDA setting'):
        runtime.Runtime('cpu', precision='tf32')
    with pytest.raises(SystemExit) as e:
        cli.run_main(Train_cifar.main, ['--data_path', cifar10_dir, '--precision', 'tf32', '--checkpoint_dir',
                                        str(tmp_path / 'ck')])
    assert e.value.code == 2 and '--precision tf32 is a CUDA setting' in capsys.readouterr().err
    assert not os.path.exists(str(tmp_path / 'ck'))


def test_deterministic_is_a_recorded_setting_and_torch_is_told(tmp_path, cifar10_dir, capsys):
    """--deterministic: torch.use_deterministic_algorithms(True) for the run, recorded in the settings, and a
    resume must keep it (it changes the algorithms, and so the numbers, on CUDA)."""
    from test_train_cifar import FAST
    ck = str(tmp_path / 'ck')
    args = ['--data_path', cifar10_dir, '--num_epochs', '0', '--warm_up', '1', '--checkpoint_dir', ck] + FAST
    try:
        cli.run_main(Train_cifar.main, args + ['--deterministic'])
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert json.load(open(os.path.join(ck, 'cifar10_0.5_sym_settings.json')))['deterministic'] is True
    with pytest.raises(SystemExit) as e:
        cli.run_main(Train_cifar.main, args + ['--num_epochs', '1', '--resume'])
    assert e.value.code == 2 and "--deterministic: True in the checkpoint, False now" in capsys.readouterr().err


def test_an_op_without_a_deterministic_kernel_exits_2_naming_it(capsys):
    """What torch raises under --deterministic for an op that has no deterministic CUDA kernel becomes
    exit status 2 and a message that names the op and the way out (not a traceback)."""
    def main(argv):
        raise RuntimeError('adaptive_max_pool2d_backward_cuda does not have a deterministic implementation, but you '
                           "set 'torch.use_deterministic_algorithms(True)'. You can turn off determinism just for "
                           'this operation, or you can use the \'warn_only=True\' option')
    with pytest.raises(SystemExit) as e:
        cli.run_main(main, [])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert 'the CUDA op adaptive_max_pool2d_backward_cuda has no deterministic kernel' in err
    assert 'Leave out --deterministic' in err and 'Traceback' not in err

    def other(argv):
        raise RuntimeError('something else')
    with pytest.raises(RuntimeError, match='something else'):  # any other error is not dressed up
        cli.run_main(other, [])


def test_deterministic_pools_compute_what_adaptive_average_pooling_computes():
    """--deterministic on CUDA swaps torchvision's AdaptiveAvgPool2d(1) (its CUDA backward has no
    deterministic kernel) for a mean over H and W: the same network function."""
    from dividemix_run.pretrained import classifier
    torch.manual_seed(0)
    net = classifier('resnet18', 5).eval()
    x = torch.randn(2, 3, 64, 64)
    before = net(x)
    runtime.deterministic_pools(net)
    assert type(net.avgpool).__name__ == 'MeanPool'
    assert torch.allclose(net(x), before, atol=1e-6)


def test_cpu_runs_do_not_pin_memory(cifar10_dir, tmp_path):
    """Pinned batches only for a run on a GPU: a --device cpu run on a GPU machine must not open a CUDA
    context (the virtual-CUDA tests check that CUDA runs pin)."""
    assert not runtime.Runtime('cpu').pin_memory
    args = Train_cifar.build_parser().parse_args(['--data_path', cifar10_dir, '--pipeline', 'reference',
                                                  '--noise_file', str(tmp_path / 'n.json'), '--num_workers', '0'])
    data = Train_cifar.load_data(args)
    s, _ = Train_cifar.resolve_settings(args, data.noise_rate)
    source = Train_cifar.make_source(s, data, runtime.Runtime('cpu'))
    assert source.loader.pin_memory is False and source.loader.run('warmup').pin_memory is False


def test_only_the_run_device_cuda_state_is_saved_and_any_saved_list_restores(monkeypatch):
    """checkpoints.rng_state keeps the CUDA generator of the one device the process runs on (never asking
    every visible device, which opens a context on each); a checkpoint of an older version holds one
    state per device then visible, and a resume with fewer visible devices restores the right one
    instead of failing with IndexError."""
    from dividemix_run import checkpoints
    assert checkpoints.rng_state()['cuda'] == []  # no CUDA in use in this process: nothing to save
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    assert checkpoints.cuda_state_to_restore(states, 3) is states[3]
    assert checkpoints.cuda_state_to_restore(states[:2], 3) is states[0]  # fewer devices than the run had
    assert checkpoints.cuda_state_to_restore(states[5:6], 0) is states[5]
    assert checkpoints.cuda_state_to_restore([], 0) is None
    restored = []
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    monkeypatch.setattr(torch.cuda, 'get_rng_state', lambda device='cuda': states[2])
    monkeypatch.setattr(torch.cuda, 'set_rng_state', lambda state, device='cuda': restored.append(state))
    saved = checkpoints.rng_state()
    assert len(saved['cuda']) == 1 and saved['cuda'][0] is states[2]
    checkpoints.set_rng_state(dict(saved, cuda=states))  # an 8-GPU checkpoint on a 1-GPU machine
    assert len(restored) == 1 and restored[0] is states[0]


def resume_check(device, ckpt):
    """resume.check_device for a run on `device`: its note, or the refusal."""
    from dividemix_run import resume
    return resume.check_device(ckpt, 'x_checkpoint.pth.tar', device)


def test_a_device_pipeline_checkpoint_resumes_only_on_its_kind_of_device():
    """The device pipeline's generator state of one kind cannot continue on the other (a CUDA state is
    16 bytes, a CPU one 5,056): refused with the --device to use, from the recorded kind or, for
    checkpoints that did not record it, from the state's size. A DataLoader pipeline has no generator
    of its own: it resumes elsewhere, with a note that the continuation is statistical."""
    cuda_state = {'generator': torch.zeros(16, dtype=torch.uint8)}
    cpu_state = {'generator': torch.Generator().get_state()}
    with pytest.raises(cli.UsageError, match='trained on CUDA.*Resume with --device cuda on a machine with a GPU'):
        resume_check('cpu', {'source': dict(cuda_state, device='cuda')})
    with pytest.raises(cli.UsageError, match='--device cuda'):
        resume_check('cpu', {'source': cuda_state})  # before the kind was recorded
    with pytest.raises(cli.UsageError, match='trained on CPU.*Resume with --device cpu'):
        resume_check('cuda', {'source': cpu_state})
    with pytest.raises(cli.UsageError, match='--device cuda'):  # torchrun: every rank's state
        resume_check('cpu', {'source': cuda_state, 'rank_states': [{'source': cuda_state}] * 2})
    assert resume_check('cpu', {'source': cpu_state, 'device_type': 'cpu'}) is None
    note = resume_check('cpu', {'source': {}, 'device_type': 'cuda'})
    assert 'trained on CUDA and resumes on CPU' in note and 'not the bit-for-bit continuation' in note


def test_a_cuda_checkpoint_resumed_on_the_cpu_exits_2_and_changes_nothing(cifar10_dir, tmp_path, capsys):
    """End to end: a finished CPU run whose checkpoint is made to look like a GPU run's (the source's
    generator a CUDA state) is refused with exit status 2, every file as it was."""
    from test_train_cifar import FAST, snapshot
    ck = str(tmp_path / 'ck')
    args = ['--data_path', cifar10_dir, '--num_epochs', '0', '--warm_up', '1', '--checkpoint_dir', ck] + FAST
    cli.run_main(Train_cifar.main, args)
    path = os.path.join(ck, 'cifar10_0.5_sym_checkpoint.pth.tar')
    ckpt = torch.load(path, weights_only=True)
    ckpt['source'] = {'generator': torch.zeros(16, dtype=torch.uint8), 'device': 'cuda'}
    ckpt['device_type'] = 'cuda'
    torch.save(ckpt, path)
    before = snapshot(ck)
    with pytest.raises(SystemExit) as e:
        cli.run_main(Train_cifar.main, args[:3] + ['1'] + args[4:] + ['--resume'])
    assert e.value.code == 2 and 'Resume with --device cuda' in capsys.readouterr().err
    assert snapshot(ck) == before
