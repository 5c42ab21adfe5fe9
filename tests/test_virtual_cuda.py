"""Every script's CUDA path on a machine without a GPU (tests/virtual_cuda.py): a warm-up step, the
per-sample-loss pass of co-divide, a DivideMix training step and the test pass, with the scripts' own
runtime, data sources and networks, on tensors of a 'cuda' device. A CPU tensor that meets a CUDA
one in any op fails these tests, as would a dtype the op refuses; so does a host sync or a copy from
the host inside a training step of the device pipeline (each one stalls a real GPU).

Cut, because fake tensors cannot do them (virtual_cuda.py says how each is stood in for): the
backward pass (leaves get zero gradients of their own device), data-dependent reads (stand-ins, counted
as syncs), the GMM's numpy input (evenly spaced losses), and the networks' channels_last weights
(module.to() fails in the mode; the inputs are channels_last, which is what cuDNN follows)."""
import os

import numpy as np
import pytest
import torch

import dividemix as dm
from conftest import make_cifar10, make_clothing1m, make_webvision
from tiny_data import make_image_folder
from virtual_cuda import VirtualCuda, first


class Forwards(object):
    """Records the device, dtype and memory format of what each network forward gets and returns."""

    def __init__(self, nets):
        self.calls = []
        self.handles = [n.register_forward_hook(self.hook) for n in nets]

    def hook(self, module, args, output):
        x = args[0]
        self.calls.append((x.device.type, x.dtype, x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last),
                           output.device.type, output.dtype))


def optimizers(nets):
    return [torch.optim.SGD(n.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4) for n in nets]


def steps(vc, runtime, nets, source, cfg, *, test_split='test', topk=(1,), n=2):
    """Algorithm 1's CUDA steps through the real functions, on the first batches of each pass; returns
    what the test asserts on."""
    opts = optimizers(nets)
    out = {}
    out['warmup'] = dm.warmup_pass(nets[0], opts[0], first(source.warmup_batches(0), n), epoch=0,
                                   conf_penalty=cfg.conf_penalty, autocast=runtime.autocast)
    losses = dm.per_sample_losses(nets[0], source.eval_batches(0), runtime.autocast)
    out['losses'] = losses
    norm = dm.normalize_losses(losses).reshape(-1, 1).numpy().astype(np.float64)  # stand-in values
    prob, gmm = dm.fit_gmm(norm, random_state=0)
    division = dm.Division(net=0, prob=prob, pred=prob > cfg.p_threshold, losses=losses, input_loss=norm, gmm=gmm)
    assert 0 < division.num_labeled < len(prob)
    labeled, unlabeled, num_labeled = source.train_batches(division)
    batches = first(labeled, n)
    syncs, copies = vc.syncs, vc.host_to_device
    out['train'] = dm.train_pass(nets[0], nets[1], opts[0], batches, unlabeled, cfg, epoch=cfg.warm_up,
                                 num_iter=dm.num_iterations(num_labeled, cfg.batch_size), randperm=source.randperm,
                                 autocast=runtime.autocast, check_every=50)
    # host reads during the steps: the pass's end only (the non-finite check, the two means)
    out['train_syncs'], out['train_copies'] = vc.syncs - syncs, vc.host_to_device - copies
    out['acc'] = dm.ensemble_accuracy(nets, source.test_batches(test_split), topk=topk, autocast=runtime.autocast)
    for net, opt in zip(nets, opts):  # the optimizer's state lives where the weights do
        for state in opt.state.values():
            assert all(t.device.type == 'cuda' for t in state.values() if isinstance(t, torch.Tensor))
    return out


def check_forwards(rec, precision, channels_last=False):
    assert rec.calls
    out_dtype = torch.bfloat16 if precision == 'bf16' else torch.float32
    for x_dev, x_dtype, x_cl, y_dev, y_dtype in rec.calls:
        assert (x_dev, x_dtype, y_dev, y_dtype) == ('cuda', torch.float32, 'cuda', out_dtype)
        if channels_last:
            assert x_cl


@pytest.fixture(scope='module')
def cifar_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('vcifar') / 'cifar-10-batches-py')
    make_cifar10(root, n_per_batch=8, n_test=16)
    return root


def cifar_run(root, tmp, extra):
    """Train_cifar's settings and data, as the script resolves them (outside the virtual GPU: files)."""
    import Train_cifar
    args = Train_cifar.build_parser().parse_args(['--data_path', root, '--batch_size', '8', '--warm_up', '1',
                                                  '--width', '8', '--num_workers', '0', '--eval_batch_size', '16',
                                                  '--noise_file', str(tmp / 'noise.json')] + extra)
    data = Train_cifar.load_data(args)
    s, _ = Train_cifar.resolve_settings(args, data.noise_rate)
    return Train_cifar, s, data


@pytest.mark.parametrize('precision, channels_last, pipeline', [
    ('fp32', False, 'device'), ('bf16', False, 'device'), ('fp32', True, 'device'), ('bf16', True, 'reference')])
def test_cifar_steps_on_cuda(cifar_root, tmp_path, precision, channels_last, pipeline):
    from dividemix_run import runtime
    script, s, data = cifar_run(cifar_root, tmp_path, ['--pipeline', pipeline, '--noise_mode', 'asym', '--r', '0.4'])
    with VirtualCuda() as vc:
        rt = runtime.Runtime('cuda', precision=precision, channels_last=channels_last)
        assert rt.pin_memory and rt.device.type == 'cuda'
        source = script.make_source(s, data, rt)
        with torch.device('cuda'):
            nets = [script.create_model(s, data) for _ in range(2)]
        rec = Forwards(nets)
        cfg = dm.Config(num_class=10, warm_up=1, batch_size=8, conf_penalty=True, gmm_seed=0)
        out = steps(vc, rt, nets, source, cfg)
    check_forwards(rec, precision, channels_last)
    assert out['losses'].device.type == 'cpu' and out['losses'].shape == (len(data.noise_label),)
    assert out['warmup']['steps'] == 2 and out['train']['steps'] == 2
    assert vc.backwards == [len(list(nets[0].parameters()))] * 4  # net1's weights only (net2 is the fixed peer)
    assert out['train_syncs'] == 3  # at the pass's end: the non-finite check and .tolist() of Lx, Lu
    if pipeline == 'device':  # the data already on the device: nothing copied from the host in a step
        assert out['train_copies'] == 0 and vc.pinned == 0
    else:  # DataLoader batches: pinned, then copied
        assert out['train_copies'] > 0 and vc.pinned > 0


def test_clothing1m_steps_on_cuda(tmp_path):
    """ResNet-50 (Train_clothing1M's model) on ClothingSource's class-balanced samples."""
    from dividemix_run import runtime
    import Train_clothing1M
    import dataloader_clothing1M
    from dividemix_run.data_sources import ClothingSource
    root = str(tmp_path / 'Clothing1M')
    make_clothing1m(root, per_class=1, n_val=2, n_test=2)
    s = Train_clothing1M.build_parser().parse_args(['--data_path', root, '--batch_size', '2'])
    with VirtualCuda() as vc:
        rt = runtime.Runtime('cuda', precision='bf16', channels_last=True)
        loader = dataloader_clothing1M.clothing_dataloader(root, 2, 2, 0, eval_batch_size=4, pin_memory=rt.pin_memory)
        source = ClothingSource(loader, rt)
        with torch.device('cuda'):
            nets = [Train_clothing1M.create_model(s) for _ in range(2)]
        rec = Forwards(nets)
        cfg = dm.Config(num_class=14, warm_up=1, batch_size=2, alpha=0.5, lambda_u=0, mix_unlabeled=False,
                        conf_penalty=True, gmm_seed=0)
        out = steps(vc, rt, nets, source, cfg, test_split='val')
    check_forwards(rec, 'bf16', channels_last=True)
    assert out['train']['steps'] >= 1 and vc.pinned > 0


def test_webvision_steps_on_cuda(tmp_path):
    """InceptionResNetV2 (299 px) on WebVision's loaders, tested top-1/top-5 on both clean splits."""
    from dividemix_run import runtime
    import dataloader_webvision
    from dividemix_run.data_sources import LoaderSource
    from InceptionResNetV2 import InceptionResNetV2
    root = str(tmp_path / 'webvision') + os.sep
    make_webvision(root, num_class=2, per_class=3, n_val=1, n_imagenet=1)
    with VirtualCuda() as vc:
        rt = runtime.Runtime('cuda')
        loader = dataloader_webvision.webvision_dataloader(2, 2, 0, root, None, pin_memory=rt.pin_memory)
        source = LoaderSource(loader, rt)
        with torch.device('cuda'):
            nets = [InceptionResNetV2(num_classes=2) for _ in range(2)]
        rec = Forwards(nets)
        cfg = dm.Config(num_class=2, warm_up=1, batch_size=2, alpha=0.5, lambda_u=0, mix_unlabeled=False, gmm_seed=0)
        out = steps(vc, rt, nets, source, cfg, topk=(1, 5), n=1)  # one step: ~0.4 s per fake forward
        imagenet = dm.ensemble_accuracy(nets, source.test_batches('imagenet'), topk=(1, 5), autocast=rt.autocast)
    check_forwards(rec, 'fp32')
    assert len(out['acc']) == 2 and len(imagenet) == 2


@pytest.mark.parametrize('sizes, extra', [((24, 32), []), ((80, 96), ['--arch', 'resnet18', '--random_init',
                                                                      '--image_size', '64'])])
def test_folder_steps_on_cuda(tmp_path, sizes, extra):
    """Train_folder's two regimes: small images on the device (PreResNet-18), large ones through
    DataLoaders into a torchvision model."""
    from dividemix_run import runtime
    import Train_folder
    import dataloader_folder
    root = str(tmp_path / 'data')
    make_image_folder(root, per_class=4, n_test=2, sizes=sizes)
    args = Train_folder.build_parser().parse_args(['--data_path', root, '--batch_size', '4', '--width', '8',
                                                   '--num_workers', '0'] + extra)
    data = dataloader_folder.scan(root)
    s, _ = Train_folder.resolve_settings(args, data)
    with VirtualCuda() as vc:
        rt = runtime.Runtime('cuda', precision='bf16')
        source, _ = Train_folder.make_source(s, data, rt)
        with torch.device('cuda'):
            nets = [Train_folder.create_model(s, None) for _ in range(2)]
        rec = Forwards(nets)
        cfg = dm.Config(num_class=3, warm_up=1, batch_size=4, mix_unlabeled=s.pipeline == 'device', gmm_seed=0)
        out = steps(vc, rt, nets, source, cfg)
    check_forwards(rec, 'bf16')
    assert out['train']['steps'] >= 1
    assert (vc.pinned > 0) == (s.pipeline == 'reference')


def test_global_batchnorm_makes_no_host_sync(monkeypatch):
    """torchrun's BatchNorm over the global batch: forward and backward ask nothing of the host (no
    sync, no copy from it); the all-reduce is stood in for by this process's own statistics."""
    from dividemix_run import distributed
    with VirtualCuda() as vc:
        with torch.device('cuda'):
            bn = distributed._convert(torch.nn.BatchNorm2d(4))
            x = torch.randn(6, 4, 5, 5, requires_grad=True)
        monkeypatch.setattr(type(bn), '_global', lambda self: self.training)
        monkeypatch.setattr(type(bn), '_all_sum', lambda self, stats: stats)
        y = bn(x)
        assert y.device.type == 'cuda' and y.dtype == torch.float32
    assert vc.syncs == 0 and vc.host_to_device == 0


def test_a_cpu_tensor_in_a_step_fails_the_check(cifar_root, tmp_path, monkeypatch):
    """The check can fail: the uniform prior of the training loss built on the CPU (a one-line slip)."""
    from dividemix_run import runtime
    script, s, data = cifar_run(cifar_root, tmp_path, [])

    def penalty_with_a_cpu_prior(logits, num_class):
        prior = torch.ones(num_class) / num_class  # device= forgotten
        return torch.sum(prior * torch.log(prior / torch.softmax(logits.float(), dim=1).mean(0)))
    monkeypatch.setattr(dm, 'uniform_prior_penalty', penalty_with_a_cpu_prior)
    with VirtualCuda() as vc:
        rt = runtime.Runtime('cuda')
        source = script.make_source(s, data, rt)
        with torch.device('cuda'):
            nets = [script.create_model(s, data) for _ in range(2)]
        cfg = dm.Config(num_class=10, warm_up=1, batch_size=8, gmm_seed=0)
        with pytest.raises(RuntimeError, match='found at least two devices, cpu and cuda:0'):
            steps(vc, rt, nets, source, cfg)
