"""The checks only a GPU can make. Skipped without CUDA; the rest of the suite hides GPUs (conftest.py),
so run these with

    DIVIDEMIX_TEST_CUDA=1 python -m pytest -q tests/test_cuda.py

(gpu_check.py speed does, after the smoke runs; -m slow adds the --compile check). DIVIDEMIX_TEST_CUDA_DRY=1
runs them on the CPU instead, for editing this file without a GPU: the CUDA-only assertions are skipped
then, the rest runs (gpu_check.py speed --smoke does that)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, make_cifar10

DRY = os.environ.get('DIVIDEMIX_TEST_CUDA_DRY') == '1'
DEVICE = 'cpu' if DRY else 'cuda'
pytestmark = pytest.mark.skipif(not DRY and not torch.cuda.is_available(),
                                reason='no CUDA device (run with DIVIDEMIX_TEST_CUDA=1 on a GPU machine)')
ENV = dict(os.environ, PYTHONWARNINGS='ignore')

FAST = ['--warm_up', '1', '--batch_size', '32', '--num_workers', '0', '--width', '16', '--log_every', '1',
        '--train_subset', '160', '--test_subset', '32', '--device', DEVICE]


def cuda_only():
    if DRY:
        pytest.skip('a CUDA-only assertion (DIVIDEMIX_TEST_CUDA_DRY)')


@pytest.fixture(scope='module')
def cifar_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cuda_cifar') / 'cifar-10-batches-py')
    make_cifar10(root)
    return root


def script(argv, cwd, timeout=300, torchrun=0):
    cmd = [sys.executable] + (['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(torchrun),
                               '--'] if torchrun else []) + [os.path.join(ROOT, 'Train_cifar.py')] + argv
    done = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=timeout, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def records(path):
    out = []
    for line in read(path).decode().splitlines():
        r = json.loads(line)
        r.pop('seconds', None)
        out.append(r)
    return out


def test_device_views_match_torchvision_within_one_ulp():
    """On CUDA, x / 255 compiles to a multiply by the reciprocal: a view may differ from torchvision's
    CPU transform by one unit in the last place, never more."""
    from test_device_data import MEAN, STD, images, reference_view
    from dividemix_run.device_data import DeviceImages
    imgs = images(12)
    dev = DeviceImages(imgs, MEAN, STD, DEVICE)
    g = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(0, 9, (12,), generator=g), torch.randint(0, 9, (12,), generator=g)
    flip = torch.rand(12, generator=g) < 0.5
    ours = dev.crop_flip(torch.arange(12, device=DEVICE), dy.to(DEVICE), dx.to(DEVICE), flip.to(DEVICE)).cpu()
    worst = 0
    for i in range(12):
        ref = reference_view(imgs[i], int(dy[i]), int(dx[i]), bool(flip[i]))
        ulp = (torch.nextafter(ref.abs(), torch.tensor(float('inf'))) - ref.abs())
        worst = max(worst, float(((ours[i] - ref).abs() / ulp).max()))
    assert worst <= 1.0, 'a view differs by %.1f ulp' % worst


def test_fp32_means_fp32_and_tf32_is_tensorfloat():
    """--precision fp32 turns TensorFloat-32 off (PyTorch's default runs cuDNN convolutions in TF32 on
    Ampere and newer); --precision tf32 turns it on."""
    cuda_only()
    from dividemix_run import runtime
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 64, 32, 32, generator=g), torch.randn(64, 64, 3, 3, generator=g)
    ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
    errors = {}
    for precision in ('fp32', 'tf32'):
        runtime.Runtime('cuda', precision=precision)
        out = torch.nn.functional.conv2d(x.cuda(), w.cuda(), padding=1).double().cpu()
        errors[precision] = float((out - ref).norm() / ref.norm())
    runtime.Runtime('cuda', precision='fp32')
    assert errors['fp32'] < 1e-6, errors
    if torch.cuda.get_device_capability()[0] >= 8:  # TF32 exists from Ampere on
        assert errors['tf32'] > 10 * errors['fp32'], errors


def test_bf16_channels_last_step_is_finite():
    import dividemix as dm
    from dividemix_run import runtime
    from PreResNet import ResNet18
    rt = runtime.Runtime(DEVICE, precision='bf16', channels_last=True)
    torch.manual_seed(0)
    nets = [rt.model(ResNet18(10, width=16)) for _ in range(2)]
    opt = torch.optim.SGD(nets[0].parameters(), lr=0.02, momentum=0.9)
    x = [rt.inputs(torch.randn(16, 3, 32, 32)) for _ in range(4)]
    labels = torch.randint(0, 10, (16,)).to(rt.device)
    cfg = dm.Config(num_class=10, warm_up=1, batch_size=16)
    out = dm.train_pass(nets[0], nets[1], opt, [(x[0], x[1], labels, torch.rand(16, device=rt.device))],
                        iter([(x[2], x[3])]), cfg, epoch=1, num_iter=1, autocast=rt.autocast)
    assert np.isfinite(out['Lx']) and np.isfinite(out['Lu'])
    assert all(torch.isfinite(p).all() for p in nets[0].parameters())


def test_deterministic_resume_is_bit_exact(cifar_root, tmp_path):
    """--deterministic: a run stopped after epoch 1 and resumed ends with the uninterrupted run's logs and
    weights, bit for bit (the promise on CUDA: same GPU model, same torch)."""
    base = ['--data_path', cifar_root, '--deterministic', '--noise_file', str(tmp_path / 'noise.json')] + FAST
    script(base + ['--num_epochs', '2', '--checkpoint_dir', str(tmp_path / 'full')], tmp_path)
    script(base + ['--num_epochs', '1', '--checkpoint_dir', str(tmp_path / 'part')], tmp_path)
    script(base + ['--num_epochs', '2', '--checkpoint_dir', str(tmp_path / 'part'), '--resume'], tmp_path)
    stem = 'cifar10_0.5_sym'
    for name in ('_acc.txt', '_stats.txt'):
        assert read(tmp_path / 'full' / (stem + name)) == read(tmp_path / 'part' / (stem + name))
    for k in (1, 2):
        a = torch.load(str(tmp_path / 'full' / ('%s_net%d.pth.tar' % (stem, k))), weights_only=True)
        b = torch.load(str(tmp_path / 'part' / ('%s_net%d.pth.tar' % (stem, k))), weights_only=True)
        assert all(torch.equal(a[key], b[key]) for key in a)


def test_deterministic_resnet50_steps_twice_alike():
    """--deterministic with a torchvision ResNet (Clothing1M's, Train_folder's default): its global average
    pool runs as a mean (adaptive_avg_pool2d's CUDA backward has no deterministic kernel), and two
    identical steps give identical weights."""
    import dividemix as dm
    from dividemix_run import runtime
    from dividemix_run.pretrained import classifier
    rt = runtime.Runtime(DEVICE, deterministic=True)
    try:
        results = []
        for _ in range(2):
            torch.manual_seed(0)
            net = rt.model(classifier('resnet50', 14))
            opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            x = rt.inputs(torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
            dm.warmup_pass(net, opt, [(x, torch.tensor([0, 1, 2, 3], device=rt.device), None)], conf_penalty=True)
            results.append(torch.cat([p.detach().flatten() for p in net.parameters()]).cpu())
        assert torch.equal(results[0], results[1])
        if not DRY:
            assert type(net.avgpool).__name__ == 'MeanPool'
    finally:
        torch.use_deterministic_algorithms(False)


def test_torchrun_one_process_on_nccl_logs_what_the_plain_run_logs(cifar_root, tmp_path):
    cuda_only()
    base = ['--data_path', cifar_root, '--deterministic', '--num_epochs', '1',
            '--noise_file', str(tmp_path / 'noise.json')] + FAST
    script(base + ['--checkpoint_dir', str(tmp_path / 'plain')], tmp_path)
    one = script(base + ['--checkpoint_dir', str(tmp_path / 'one')], tmp_path, torchrun=1)
    assert 'cuda:0' in one.stdout
    stem = 'cifar10_0.5_sym'
    for name in ('_acc.txt', '_stats.txt'):
        assert read(tmp_path / 'plain' / (stem + name)) == read(tmp_path / 'one' / (stem + name))
    assert records(tmp_path / 'plain' / (stem + '_log.jsonl')) == records(tmp_path / 'one' / (stem + '_log.jsonl'))


@pytest.mark.slow  # minutes of compilation: gpu_check.py runs it last, as tests_cuda_compile
def test_compile_does_not_recompile_after_its_first_epoch(cifar_root, tmp_path):
    """--compile: every graph is built in the first epochs (one per batch size and mode); the next ones
    reuse them. Counted in-process from dynamo's frame counters."""
    cuda_only()
    import torch._dynamo.utils as dynamo_utils
    import Train_cifar
    counts = []
    real_end = Train_cifar.Run.end_epoch

    def end_epoch(run, record, **state):
        counts.append(dynamo_utils.counters['stats']['unique_graphs'])
        return real_end(run, record, **state)
    Train_cifar.Run.end_epoch = end_epoch
    try:
        Train_cifar.main(['--data_path', cifar_root, '--num_epochs', '3', '--compile',
                          '--checkpoint_dir', str(tmp_path / 'ck'), '--noise_file', str(tmp_path / 'noise.json')]
                         + FAST)
    finally:
        Train_cifar.Run.end_epoch = real_end
    # epoch 0 warms up, epoch 1 is the first DivideMix epoch (new shapes and modes); epoch 2 adds nothing
    assert counts[2] == counts[1], counts
