"""Device, precision, memory format and compilation: decided here and nowhere else.

Runtime(device, gpuid, precision, channels_last, compile, compile_mode) from the runtime
flags; the scripts build nets with runtime.model(net), forward through runtime.runner(net),
move DataLoader batches with runtime.inputs(x), and wrap forwards in runtime.autocast().
"""
import contextlib

import torch

import distributed
from cli import UsageError, check_range


class Runtime(object):
    """Device, precision, memory format and compilation, from the runtime flags."""

    def __init__(self, device='auto', gpuid=0, precision='fp32', channels_last=False, compile=False,
                 compile_mode='default'):
        if device == 'cuda' and not torch.cuda.is_available():
            raise UsageError('--device cuda but no CUDA device is available: use --device cpu or auto')
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device == 'cuda' and distributed.launched():
            gpuid = distributed.local_rank()  # torchrun: one process per GPU of the node
        if device == 'cuda':
            check_range('gpuid', gpuid, 0, torch.cuda.device_count() - 1,
                        hint='this machine has %d CUDA device(s)' % torch.cuda.device_count())
            torch.cuda.set_device(gpuid)
            self.device = torch.device('cuda', gpuid)
            torch.backends.cudnn.benchmark = True
        else:
            self.device = torch.device('cpu')
        self.precision = precision
        self.channels_last = channels_last
        self.compile = compile
        self.compile_mode = compile_mode

    @classmethod
    def from_args(cls, args):
        return cls(args.device, args.gpuid, args.precision, args.channels_last, args.compile, args.compile_mode)

    def sync(self):
        """Wait for the device (timing)."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def check_conv_width(self, narrowest):
        """Refuse a CPU setting that torch's CPU convolution gets wrong. Measured with torch 2.15
        on an AVX2 CPU: the backward of a stride-2 1x1 convolution (PreResNet's first downsampling
        shortcut) with 2 to 7 input channels in channels_last layout hangs, corrupts the heap or
        returns wrong gradients (oneDNN's jit_avx2_1x1 kernel). fp32 only; --compile picks
        channels_last by itself. Real widths (8 and up; the paper's is 64) are unaffected."""
        if (self.device.type == 'cpu' and self.precision == 'fp32' and (self.channels_last or self.compile)
                and 2 <= narrowest < 8):
            flag = '--compile' if self.compile else '--channels_last'
            raise UsageError('--width %d with %s on the CPU: torch\'s CPU convolution hangs or computes wrong '
                             'gradients for stride-2 1x1 convolutions with fewer than 8 input channels in '
                             'channels_last layout; use --width 8 or more, or leave out %s' % (narrowest, flag, flag))

    def autocast(self):
        """Context for forward passes: bf16 autocast, or nothing for fp32."""
        if self.precision == 'bf16':
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def model(self, net):
        """Move a freshly built network to the device (and memory format)."""
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    def runner(self, net, batch_sizes=()):
        """What the algorithm calls: the network itself, or with --compile a module that runs
        the compiled network on the batch sizes it was compiled for and the eager one on
        others (the ragged last batches), so shapes never trigger recompilation."""
        if not self.compile:
            return net
        return CompiledNet(net, batch_sizes, self.compile_mode)

    def inputs(self, x):
        """Move a batch tensor from a DataLoader to the device (non-blocking from pinned memory)."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def describe(self):
        name = torch.cuda.get_device_name(self.device) if self.device.type == 'cuda' else 'CPU'
        return '%s (%s), %s%s%s' % (self.device, name, self.precision, ', channels_last' if self.channels_last else '',
                                   ', compiled (%s)' % self.compile_mode if self.compile else '')


class CompiledNet(torch.nn.Module):
    """Dispatch by batch size between a compiled and the eager network (same parameters).

    dynamic=False: one static-shape graph per batch size (a handful: B, 2B, 4B, eval batch,
    in train/eval and grad/no-grad variants) instead of dynamo's switch to a dynamic-shape
    graph at the second size. With mode 'reduce-overhead' (CUDA graphs) an output is only
    valid until the next compiled call, so the algorithm consumes every output before the
    next forward (tests/test_runtime.py checks this with outputs overwritten on purpose)."""

    def __init__(self, net, batch_sizes, mode):
        super().__init__()
        self.net = net
        self.batch_sizes = set(int(b) for b in batch_sizes)
        # both networks share one compiled code object; leave room for every variant of both
        cfg = torch._dynamo.config
        name = 'recompile_limit' if hasattr(cfg, 'recompile_limit') else 'cache_size_limit'  # older torch
        setattr(cfg, name, max(getattr(cfg, name), 32))
        object.__setattr__(self, '_compiled', torch.compile(net, mode=None if mode == 'default' else mode,
                                                            dynamic=False))

    def forward(self, x):
        if x.size(0) in self.batch_sizes:
            return self._compiled(x)
        return self.net(x)
