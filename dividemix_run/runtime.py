"""Device, precision, determinism, memory format and compilation: decided here and nowhere else.

Runtime(device, gpuid, precision, channels_last, compile, compile_mode, deterministic) from the
runtime flags; the scripts build nets with runtime.model(net), forward through runtime.runner(net),
move DataLoader batches with runtime.inputs(x) (DataLoaders pin memory when runtime.pin_memory), and
wrap forwards in runtime.autocast().

What is bit-exact where (docs/resume.md, "What is exact where"): on the CPU a run and its resumption always
reach the same bits. On CUDA only with --deterministic, on the same GPU model and torch version
(cuDNN and cuBLAS pick their algorithms by both); otherwise a CUDA run is the same run statistically,
not bitwise (convolution algorithms chosen by benchmarking, atomics in some backward kernels).
"""
import contextlib
import os

import torch

from . import distributed
from .cli import UsageError, check_range

PRECISIONS = ('fp32', 'tf32', 'bf16')


class Runtime(object):
    """Device, precision, determinism, memory format and compilation, from the runtime flags.

    precision: fp32 (IEEE single precision everywhere, also on GPUs that could use TensorFloat-32),
    tf32 (CUDA only: matmuls and convolutions in TF32 on Ampere and newer, fp32 elsewhere), bf16
    (autocast of the forward passes; losses and softmaxes in fp32). deterministic: deterministic
    cuDNN/cuBLAS algorithms and torch.use_deterministic_algorithms(True) (an op without a
    deterministic kernel then raises, naming itself: see DeterministicOpError)."""

    def __init__(self, device='auto', gpuid=0, precision='fp32', channels_last=False, compile=False,
                 compile_mode='default', deterministic=False):
        if precision not in PRECISIONS:
            raise UsageError('--precision %s: choose one of %s' % (precision, ', '.join(PRECISIONS)))
        if device == 'cuda' and not torch.cuda.is_available():
            raise UsageError('--device cuda but no CUDA device is available: use --device cpu or auto')
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device == 'cuda' and distributed.launched():
            gpuid = distributed.local_rank()  # torchrun: one process per GPU of the node
        if device == 'cuda':
            check_range('gpuid', gpuid, 0, torch.cuda.device_count() - 1,
                        hint='this machine has %d CUDA device(s)' % torch.cuda.device_count())
            if deterministic:  # before the first cuBLAS call: its workspace decides reproducibility
                os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
            torch.cuda.set_device(gpuid)
            torch.cuda.init()  # now, so that the random-state code knows CUDA is this run's (checkpoints.py)
            self.device = torch.device('cuda', gpuid)
            # benchmarking picks the fastest convolution algorithm per shape, which may differ between runs
            torch.backends.cudnn.benchmark = not deterministic
            torch.backends.cudnn.deterministic = deterministic
            # fp32 means fp32: PyTorch's default runs cuDNN convolutions in TF32 on Ampere and newer GPUs
            tf32 = precision == 'tf32'
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        else:
            if precision == 'tf32':
                raise UsageError('--precision tf32 is a CUDA setting (TensorFloat-32 matmuls and convolutions on '
                                 'Ampere and newer GPUs); on the CPU use fp32 or bf16')
            self.device = torch.device('cpu')
        torch.use_deterministic_algorithms(deterministic)  # process-wide, as the cuDNN switches above
        self.deterministic = deterministic
        self.precision = precision
        self.channels_last = channels_last
        self.compile = compile
        self.compile_mode = compile_mode

    @classmethod
    def from_args(cls, args):
        return cls(args.device, args.gpuid, args.precision, args.channels_last, args.compile, args.compile_mode,
                   deterministic=getattr(args, 'deterministic', False))

    @property
    def pin_memory(self):
        """Whether DataLoaders should pin their batches: only when they go to a GPU (pinning on a CPU run
        would open a CUDA context on GPU 0 of a GPU machine for nothing)."""
        return self.device.type == 'cuda' 

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
        """Move a freshly built network to the device (and memory format); with --deterministic, its
        global average pools as means (see deterministic_pools). A network already there is left as it is."""
        if self.deterministic and self.device.type == 'cuda':
            net = deterministic_pools(net)
        if any(p.device != self.device for p in net.parameters()):
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
        return '%s (%s), %s%s%s%s' % (self.device, name, self.precision, ', channels_last' if self.channels_last else '',
                                     ', compiled (%s)' % self.compile_mode if self.compile else '',
                                     ', deterministic' if self.deterministic else '')


class MeanPool(torch.nn.Module):
    """Global average pooling as a mean over the spatial dimensions: the values of AdaptiveAvgPool2d(1),
    with a backward (a broadcast) that is deterministic on CUDA, where adaptive_avg_pool2d's is not."""

    def forward(self, x):
        return x.mean(dim=(-2, -1), keepdim=True)


def deterministic_pools(net):
    """net with every AdaptiveAvgPool2d of output size 1 (torchvision's ResNets, EfficientNets, ConvNeXts,
    ...) replaced by MeanPool: under torch.use_deterministic_algorithms(True) adaptive_avg_pool2d's CUDA
    backward raises (it has no deterministic kernel); a mean over H, W computes the same and its backward
    is deterministic. Other pools are left alone (PreResNet's avg_pool2d, InceptionResNetV2's AvgPool2d
    and MaxPool2d have deterministic kernels)."""
    for name, child in list(net.named_children()):
        if isinstance(child, torch.nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1)):
            setattr(net, name, MeanPool())
        else:
            deterministic_pools(child)
    return net



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
