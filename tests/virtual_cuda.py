"""CUDA tensors on a machine without a GPU, for checking the CUDA code paths on the CPU.

    with VirtualCuda() as vc:          # torch.cuda reports one device; new tensors are FakeTensors
        runtime = Runtime('cuda')      # the scripts' own code, unchanged
        with torch.device('cuda'):
            net = ResNet18(10)         # modules are built on the device inside the mode (.to() fails there)
        ...the algorithm's steps...
    vc.syncs, vc.host_to_device       # what the steps asked of the host

Inside, torch's FakeTensorMode gives every tensor a device, a dtype and a shape but no data, and
raises on any op that mixes a CPU tensor with a CUDA one (0-d CPU tensors excepted, as on a real
GPU). What it cannot do without a GPU is cut or stood in for:
  - data-dependent host reads (.item(), bool(), float(), .tolist()) return stand-ins (True for
    bools, -1 for integers, 0.25 for floats) and are counted (vc.syncs): each is a host sync on a GPU;
  - Tensor.backward() (the autograd engine needs a CUDA context) gives every leaf the loss depends
    on a zero gradient of its own device and dtype, so that optimizer steps run; it checks that the
    loss is a finite-shaped 0-d CUDA tensor;
  - Tensor.numpy() of a fake tensor returns evenly spaced values in [0, 1] of its shape (what the GMM
    of co-divide reads: a loss vector);
  - a DataLoader's dataset reads run outside the mode (real CPU tensors, as its worker processes
    would make), and pinning a batch returns it as it is (counted: vc.pinned);
  - torch.Generator(device='cuda') is a CPU generator (a CUDA one needs the driver).
"""
import contextlib
import itertools
import os
import sys

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode


class _HostReads(TorchDispatchMode):
    """Stand-ins for data-dependent host reads, counted; CPU -> CUDA copies counted."""

    def __init__(self, vc):
        super().__init__()
        self.vc = vc

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            t = args[0]
            self.vc.syncs += t.device.type == 'cuda'  # reading a CPU tensor is no sync
            return True if t.dtype == torch.bool else (0.25 if t.is_floating_point() else -1)
        out = func(*args, **kwargs)
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            src = args[1] if func is torch.ops.aten.copy_.default else args[0]
            dst = args[0] if func is torch.ops.aten.copy_.default else out
            if isinstance(src, torch.Tensor) and src.device.type == 'cpu' and dst.device.type == 'cuda' \
                    and src.dim() > 0:
                self.vc.host_to_device += 1
        return out


def _leaves(t):
    """The leaf tensors (parameters) a loss depends on, from its autograd graph."""
    seen, out, stack = set(), [], [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, 'variable'):
            out.append(node.variable)
        stack.extend(n for n, _ in node.next_functions)
    return out


class VirtualCuda(object):
    def __init__(self):
        self.syncs = 0
        self.host_to_device = 0
        self.pinned = 0
        self.backwards = []
        self._stack = None

    def _patches(self):
        vc = self
        cpu_generator = torch.Generator

        class generator(cpu_generator):  # a class still (annotations use `torch.Generator | None`)
            def __new__(cls, device='cpu'):
                return cpu_generator()

        def backward(loss, gradient=None, retain_graph=None, create_graph=False, inputs=None):
            assert isinstance(loss, FakeTensor), 'backward of a tensor made outside the virtual GPU'
            assert loss.device.type == 'cuda', 'the loss is on %s, not on the GPU' % loss.device
            assert loss.dim() == 0 and loss.dtype == torch.float32, (loss.shape, loss.dtype)
            leaves = _leaves(loss)
            vc.backwards.append(len(leaves))
            for p in leaves:
                assert p.device.type == 'cuda', 'a parameter on %s reached the loss' % p.device
                p.grad = torch.zeros_like(p) if p.grad is None else p.grad

        real_numpy = torch.Tensor.numpy

        def numpy(t, *args, **kwargs):
            if isinstance(t, FakeTensor):
                n = max(1, t.numel())
                return np.linspace(0, 1, n, dtype=np.float32).astype(
                    {torch.float32: np.float32, torch.float64: np.float64}.get(t.dtype, np.float32))[:t.numel()
                                                                                                   ].reshape(t.shape)
            return real_numpy(t, *args, **kwargs)

        def pin(data, device=None):
            vc.pinned += 1
            return data

        def from_fake_tensor_code():
            # FakeTensorMode itself asks whether CUDA exists (to avoid initialising it, or to warm a real
            # context up): it must keep hearing the truth
            return sys._getframe(2).f_code.co_filename.endswith(os.path.join('_subclasses', 'fake_tensor.py'))

        def is_available():
            return not from_fake_tensor_code()

        real_accelerator = torch.accelerator.current_accelerator

        def current_accelerator(*args):
            return real_accelerator(*args) if from_fake_tensor_code() else torch.device('cuda')

        import torch.utils.data._utils.fetch as fetch_module
        import torch.utils.data.dataloader as dataloader_module
        from torch.utils._python_dispatch import _disable_current_modes
        real_fetch = fetch_module._MapDatasetFetcher.fetch

        def fetch(fetcher, index):  # a DataLoader's host side (its workers' work) makes real CPU tensors
            with _disable_current_modes():
                return real_fetch(fetcher, index)

        real_next_index = dataloader_module._BaseDataLoaderIter._next_index

        def next_index(it):  # and so does its sampler (shuffles drawn from torch's CPU generator)
            with _disable_current_modes():
                return real_next_index(it)

        import torch.utils.data._utils.pin_memory as pin_module
        return [
            (torch.cuda, 'is_available', is_available), (torch.cuda, 'device_count', lambda: 1),
            (torch.cuda, 'set_device', lambda d: None), (torch.cuda, 'init', lambda: None),
            (torch.cuda, 'current_device', lambda: 0), (torch.cuda, 'is_initialized', lambda: True),
            (torch.cuda, 'get_device_name', lambda d=None: 'virtual CUDA device'),
            (torch.cuda, 'get_device_properties',
             lambda d=None: type('Properties', (), {'name': 'virtual CUDA device', 'total_memory': 80 * 2 ** 30})()),
            (torch.cuda, 'synchronize', lambda d=None: None), (torch.cuda, 'is_bf16_supported', lambda *a: True),
            (torch.cuda, 'get_rng_state', lambda d='cuda': torch.zeros(16, dtype=torch.uint8, device='cpu')),
            (torch.cuda, 'set_rng_state', lambda s, d='cuda': None),
            (torch.accelerator, 'current_accelerator', current_accelerator),
            (torch.accelerator, 'current_device_index', lambda: 0),
            (torch, 'Generator', generator), (torch.Tensor, 'backward', backward), (torch.Tensor, 'numpy', numpy),
            (pin_module, 'pin_memory', pin), (dataloader_module._utils.pin_memory, 'pin_memory', pin),
            (fetch_module._MapDatasetFetcher, 'fetch', fetch),
            (dataloader_module._BaseDataLoaderIter, '_next_index', next_index),
        ]

    def __enter__(self):
        self._saved = []
        for obj, name, value in self._patches():
            self._saved.append((obj, name, getattr(obj, name)))
            setattr(obj, name, value)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
        self._stack.enter_context(_HostReads(self))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        for obj, name, value in reversed(self._saved):
            setattr(obj, name, value)
        return False


def first(batches, n):
    """The first n batches of a pass (a virtual step needs one or two, not a whole epoch)."""
    return list(itertools.islice(iter(batches), n))
