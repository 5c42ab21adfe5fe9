"""Several processes, one per device: what the run skeleton needs from torch.distributed.

    torchrun --nproc_per_node 4 Train_cifar.py ...        # one node, four GPUs
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --master_addr HOST --master_port 29500 Train_x.py ...

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them (plain `python Train_x.py`) nothing here
does anything and the run is the single-process one, unchanged. Backends: NCCL on CUDA, gloo on
the CPU. Rank 0 writes every file and prints; the other ranks compute.
"""
import datetime
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

import dividemix as dm


def launched():
    """Started by torchrun (or any launcher that sets the env:// variables)?"""
    return 'WORLD_SIZE' in os.environ and 'RANK' in os.environ


def env_rank():
    """This process's rank from the environment, before the process group exists (0 without torchrun)."""
    return int(os.environ.get('RANK', 0))


def local_rank():
    return int(os.environ.get('LOCAL_RANK', 0))


def active():
    return dist.is_available() and dist.is_initialized()


def rank():
    return dist.get_rank() if active() else 0


def world_size():
    return dist.get_world_size() if active() else 1


def is_main():
    return rank() == 0


def part(n, rank, world):
    """Rank `rank`'s contiguous share of n rows: a slice (sizes differ by at most one). The same split
    as dividemix's, which gathers the parts in rank order."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def init(device, timeout_minutes=30):
    """Join the process group (after the inputs were checked: bad input stops every rank before it).
    Ranks other than 0 stop printing to stdout. Returns the world size."""
    if not launched() or active():
        return world_size()
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    kwargs = {'device_id': device} if device.type == 'cuda' else {}
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes), **kwargs)
    if dist.get_rank() != 0:
        sys.stdout = open(os.devnull, 'w')
    return dist.get_world_size()


def shutdown():
    if active():
        dist.destroy_process_group()


def barrier():
    if active():
        dist.barrier()


def broadcast_object(obj, src=0):
    """obj from rank src on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def check_same(value, what, error=RuntimeError):
    """Raise error naming `what` when value (str or bytes) is not the same on every process
    (e.g. a data file that differs between the nodes of a multi-node job)."""
    if not active():
        return
    import hashlib
    data = value.encode() if isinstance(value, str) else bytes(value)
    mine = hashlib.sha256(data).hexdigest()
    if not all_true(broadcast_object(mine) == mine):
        raise error('%s differ(s) between the processes of this job: every node must read the same files '
                    '(a shared file system, or identical copies)' % what)


def same_streams(a, b):
    """Are two processes' random states (checkpoints.rng_state() and a source's state_dict) equal?
    CUDA generators are left out: each process draws on its own device only."""
    if isinstance(a, dict):
        keys = set(a) - {'cuda'}
        return keys == set(b) - {'cuda'} and all(same_streams(a[k], b[k]) for k in keys)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_streams(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a.cpu(), b.cpu())
    return a == b


def gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...] on rank 0 (None elsewhere); [obj] without a process group."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_true(flag):
    """True on every rank when flag is true on every rank (e.g. 'my checks passed')."""
    if not active():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64,
                     device='cuda' if dist.get_backend() == 'nccl' else 'cpu')
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


class _AllSum(torch.autograd.Function):
    """Sum over the processes, differentiable (the gradient of a sum over the ranks is the sum of the ranks'
    gradients), through torch's functional collectives, which torch.compile traces into its graph: a
    compiled network with GlobalBatchNorm layers stays one graph (torch.distributed.nn's collectives
    would break it at every layer)."""

    @staticmethod
    def forward(ctx, t):
        import torch.distributed._functional_collectives as funcol
        return funcol.all_reduce(t, 'sum', dist.group.WORLD)

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed._functional_collectives as funcol
        return funcol.all_reduce(grad.contiguous(), 'sum', dist.group.WORLD)


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode statistics are those of the global batch: every rank's rows
    together, as the reference's one forward over the whole batch had them. In eval mode, or without
    a process group of several processes, it is the plain BatchNorm.

    Why not torch.nn.SyncBatchNorm: it refuses CPU tensors (and DDP refuses it on CPU modules), so
    it could not run, nor be tested, under gloo. This one runs on every backend, with one collective
    per layer and forward and no host synchronisation: each rank's per-channel sum and sum of squares
    (accumulated in float64) and its row count, one tensor of 2C + 1 numbers, are summed over the ranks
    by one differentiable all-reduce (its backward is the all-reduce of the gradients, so DDP's
    averaged gradient is that of the global batch). Running averages get the unbiased global
    variance, the same on every rank."""

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError('expected at least 2D input (got %dD input)' % input.dim())

    def _global(self):
        """Whether this forward uses the global batch's statistics."""
        return self.training and active() and dist.get_world_size() > 1

    def _all_sum(self, stats):
        """(2C + 1,): the sum of every rank's statistics (a hook: scaling.py times one rank's arithmetic)."""
        return _AllSum.apply(stats)

    def forward(self, x):
        if not self._global():
            return super().forward(x)
        C = x.size(1)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, C] + [1] * (x.dim() - 2)
        xf = x.float()
        n = x.numel() // C                                               # a host number: no sync
        # sums accumulated in float64: E[x^2] - E[x]^2 stays exact to float32 precision unless |mean| is
        # thousands of standard deviations (a running-mean shift would do it in float32, but torch.compile's
        # partitioner recomputes such a shift in the backward from the buffer it just updated)
        s1 = xf.sum(dims, dtype=torch.float64)                           # (C,)
        s2 = (xf * xf).sum(dims, dtype=torch.float64)                    # (C,)
        # a rank without rows this step still takes part in the collective (its sums are zeros)
        total = self._all_sum(torch.cat([s1, s2, s1.new_full((1,), float(n))]))   # (2C + 1,), every rank's
        count = total[2 * C]
        g_mean = total[:C] / count                                       # (C,)
        g_var = (total[C:2 * C] / count - g_mean * g_mean).clamp(min=0)  # biased, for normalising
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / self.num_batches_tracked.double()) if self.momentum is None else self.momentum
                unbiased = g_var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - m).add_((m * g_mean).to(self.running_mean.dtype))
                self.running_var.mul_(1 - m).add_((m * unbiased).to(self.running_var.dtype))
        out = (xf - g_mean.float().view(shape)) * torch.rsqrt(g_var.float() + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


# ----------------------------------------------------------------------------------
# Algorithm 1's steps on a global batch split over the processes (dividemix.py's seam)
# ----------------------------------------------------------------------------------

def _all_reduce(t, op=None):
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


_HOST_GROUP = []


def _row_counts(n, world):
    """Every rank's row count, as Python ints, exchanged over a CPU (gloo) group: the counts are host
    numbers, and gathering them through NCCL would make the host wait for the device (a sync) before
    the rows can be cut. Without gloo, through the default group."""
    group = None
    if dist.get_backend() != 'gloo' and dist.is_gloo_available():
        if not _HOST_GROUP:  # created by every rank at the same call: all gathers run in the same order
            _HOST_GROUP.append(dist.new_group(backend='gloo'))
        group = _HOST_GROUP[0]
    device = 'cpu' if group is not None or dist.get_backend() == 'gloo' else 'cuda'
    t = torch.tensor([n], device=device)
    counts = [torch.zeros_like(t) for _ in range(world)]
    dist.all_gather(counts, t, group=group)
    return [int(c) for c in counts]


def all_gather_rows(*tensors):
    """Under a process group: each tensor (n_r, ...) on rank r -> the rows of every rank, concatenated
    in rank order, on every rank (n_r may differ between ranks)."""
    world = world_size()
    sizes = _row_counts(tensors[0].size(0), world)
    out = []
    for t in tensors:
        padded = t.new_zeros((max(sizes),) + tuple(t.shape[1:]))
        padded[:t.size(0)] = t
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        out.append(torch.cat([part[:size] for part, size in zip(parts, sizes)]))
    return out


class ManyProcesses(dm.OneProcess):
    """dividemix.py's steps for a global batch split over the processes, each rank holding its contiguous
    part of every batch (the data sources give rank r the r-th part): every step computes what the single
    process computes on the whole batch. Warm-up and training losses are scaled so that DDP's gradient
    average is the gradient of the global loss; the MixUp of a training step mixes the global batch
    (every rank draws the same l and permutation and gathers the rows) and each rank forwards its part of
    the mixed rows, with GlobalBatchNorm's statistics of the reference's one forward; co-divide gathers
    the per-sample losses (each sample once), every rank fits the GMM and rank 0's posteriors are
    broadcast; the test sums every rank's counts. Plugged in with dividemix.use_processes()."""

    def warmup_loss(self, outputs, labels, conf_penalty):
        """(the global batch's mean CE for the record, this rank's loss for backward): the sums of this
        rank's rows over the global row count, times world so that DDP's average is the global mean."""
        world = world_size()
        probs = torch.softmax(outputs, dim=1)
        ce_sum = F.cross_entropy(outputs, labels, reduction='sum')
        neg_sum = torch.sum(probs.log() * probs) if conf_penalty else torch.zeros((), device=outputs.device)
        # the row count from a host number by a fill, not a copy from the host (which would wait for the device)
        totals = _all_reduce(torch.stack([ce_sum.detach(), neg_sum.detach(),
                                          outputs.new_full((), float(outputs.size(0)))]))
        count = totals[2]
        return totals[0] / count, world * (ce_sum + neg_sum) / count

    def train_loss(self, net, cfg, l, randperm, labeled, unlabeled, current, autocast):
        """One training step of the global batch from this rank's part of it. Returns (this rank's loss for
        backward, global Lx, global Lu, lambda, the global loss): DDP's average of the ranks' gradients is
        the global loss's gradient, the uniform-prior penalty's through a differentiable all-reduce of the
        mean prediction."""
        rank, world = dist.get_rank(), dist.get_world_size()
        X, X2, TX = all_gather_rows(*labeled)
        if unlabeled is not None:
            U, U2, TU = all_gather_rows(*unlabeled)
            all_inputs, all_targets = torch.cat([X, X2, U, U2]), torch.cat([TX, TX, TU, TU])
        else:
            all_inputs, all_targets = torch.cat([X, X2]), torch.cat([TX, TX])
        n_lab = 2 * X.size(0)
        idx = randperm(all_inputs.size(0), device=all_inputs.device)
        mixed_input, mixed_target = dm.mixmatch(all_inputs, all_targets, l, idx, None if cfg.mix_unlabeled else n_lab)
        n_all = mixed_input.size(0)
        n_unl = n_all - n_lab if (cfg.mix_unlabeled and unlabeled is not None) else 0
        lab, unl = part(n_lab, rank, world), part(n_unl, rank, world)
        rows = torch.cat([torch.arange(lab.start, lab.stop), n_lab + torch.arange(unl.start, unl.stop)])
        rows = rows.to(mixed_input.device)
        with autocast():
            logits = net(mixed_input[rows])
        logits = logits.float()
        k = lab.stop - lab.start
        targets = mixed_target[rows]
        lx_sum = -torch.sum(F.log_softmax(logits[:k], dim=1) * targets[:k])
        lu_sum = (torch.sum((torch.softmax(logits[k:], dim=1) - targets[k:]) ** 2) if n_unl
                  else torch.zeros((), device=logits.device))
        import torch.distributed.nn.functional as dist_fn  # differentiable collectives
        pred_mean = dist_fn.all_reduce(torch.softmax(logits, dim=1).sum(0)) / n_all
        prior = torch.ones(cfg.num_class, device=logits.device) / cfg.num_class
        penalty = torch.sum(prior * torch.log(prior / pred_mean))
        lamb = dm.linear_rampup(current, cfg.warm_up, cfg.lambda_u, cfg.rampup_length)
        totals = _all_reduce(torch.stack([lx_sum.detach(), lu_sum.detach()]))
        Lx = totals[0] / n_lab
        Lu = totals[1] / (n_unl * cfg.num_class) if n_unl else torch.zeros((), device=logits.device)
        local = lx_sum / n_lab + (lamb * lu_sum / (n_unl * cfg.num_class) if n_unl else 0.0)
        return world * local + penalty, Lx, Lu, lamb, Lx + lamb * Lu + penalty.detach()

    def losses_at(self, indices, losses, device):
        """Every rank's shard of the per-sample losses, gathered: each sample once (the sources give every
        index to one rank)."""
        index = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long, device=device)
        values = torch.cat(losses) if losses else torch.zeros(0, device=device)
        return all_gather_rows(index.to(device), values.to(device))

    def share(self, prob, device):
        """Rank 0's posteriors on every rank: every rank fits (an unseeded GMM draws from numpy's global
        stream, which must stay in step everywhere), but scikit-learn on two hosts need not give the same
        bits. Contiguous: prob is a column of predict_proba's (N, 2) array, and a strided tensor would be
        sent as its first N storage elements."""
        t = torch.as_tensor(np.ascontiguousarray(prob), dtype=torch.float64, device=device)
        dist.broadcast(t, 0)
        return t.cpu().numpy()

    def test_counts(self, correct, total, finite, device):
        """Every rank tested its shard of the split: the counts summed, finite everywhere."""
        total = int(_all_reduce(torch.tensor([total], device=device)).item())
        _all_reduce(correct)
        finite = _all_reduce(torch.as_tensor(finite, device=device).to(torch.int64).view(1), dist.ReduceOp.MIN).bool()
        return correct, total, finite


def use_processes():
    """Plug the multi-process steps into dividemix.py when several processes run (else the single process's)."""
    dm.use_processes(ManyProcesses() if world_size() > 1 else dm.OneProcess())


def convert_bn(net, sync_bn=True):
    """Every BatchNorm layer of net as a GlobalBatchNorm holding the same parameters and buffers (an
    optimizer built on them still holds; the state_dict keys are unchanged). Nothing without a process
    group of several processes, or with sync_bn False (statistics per process: faster, not the
    reference's)."""
    if world_size() == 1 or not sync_bn:
        return net
    return _convert(net)


def _convert(module, cls=None):
    """module with every BatchNorm replaced by cls (GlobalBatchNorm), in place below the top."""
    cls = cls or GlobalBatchNorm
    out = module
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = cls(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert(child, cls))
    return out


def wrap(net, device):
    """DistributedDataParallel around net (gradients averaged over the processes), or net itself
    without a process group. Parameters and buffers are copied from rank 0 once, at the start;
    buffers are not synchronised at each forward: with GlobalBatchNorm every rank computes the same
    running statistics (with --no_sync_bn each rank keeps its own, and rank 0's are saved)."""
    if world_size() == 1:
        return net
    import inspect
    DDP = torch.nn.parallel.DistributedDataParallel
    no_sync = ({'forward_sync_buffers': False} if 'forward_sync_buffers' in inspect.signature(DDP).parameters
               else {'broadcast_buffers': False})
    return DDP(net, device_ids=[device.index] if device.type == 'cuda' else None, **no_sync)
