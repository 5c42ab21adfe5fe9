"""Run under torchrun (or plain python) by tests/test_distributed.py; not a test module itself.

    python tests/ddp_worker.py run OUT SCRIPT [--tiny] [--kill_in EPOCH] [--die_at EPOCH] -- ARGS... [+++ OUT SCRIPT ...]
        SCRIPT's main(ARGS) with Run patched to record, per rank and per epoch, a digest of the two
        divisions (prob and pred) and of both nets' parameters and buffers (OUT/rank<r>.jsonl), and
        every file a rank other than 0 opens for writing (OUT/writes<r>.json). --tiny: the tests' tiny
        network for Clothing1M/WebVision. --kill_in E: rank 0 SIGKILLs the whole process group (the
        launcher too) in epoch E, once it has trained and before anything of it is saved. --die_at E:
        rank 1 SIGKILLs itself as epoch E starts. --drift_at E: rank 1 draws one extra number from
        Python's `random` as epoch E starts. --labels_differ: rank 1 sees other noisy labels. Jobs
        after '+++' run next in the same processes and process group (also after a job that exited
        with an error; its status is in OUT/exit<rank>.json); SCRIPT 'step' is main_step.

    python tests/ddp_worker.py step OUT
        One warm-up step and one DivideMix training step of a small BatchNorm network on a fixed
        global batch: in one process (plain python) or split over the ranks (torchrun); writes both
        nets' parameters and buffers after each step to OUT/step<r>.pt.

    (as a job of `run`) OUT compile
        A small network with GlobalBatchNorm, torch.compile'd whole (fullgraph=True, backend aot_eager:
        the graph capture --compile goes through, without a C++ compiler) against eager, forward and
        backward on this rank's part of a global batch; OUT/compile<r>.json says whether it compiled
        as one graph and how far it is from eager.
"""
import builtins
import hashlib
import json
import os
import random
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dividemix_run import distributed  # noqa: E402
from dividemix_run import run as run_module  # noqa: E402


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return h.hexdigest()[:16]


def _net_digest(nets):
    return _digest(*[t.detach().cpu().numpy() for net in nets for t in net.state_dict().values()])


JOB = {}  # the current job's output folder and per-rank log


def start_job(out, opts):
    os.makedirs(out, exist_ok=True)
    if JOB.get('log'):
        JOB['log'].close()
    JOB['out'] = out  # first: rank 1's open() spy reads it
    JOB['log'] = open(os.path.join(out, 'rank%d.jsonl' % distributed.env_rank()), 'a')
    for flag in ('--kill_in', '--die_at', '--drift_at'):
        JOB[flag[2:]] = int(opts[opts.index(flag) + 1]) if flag in opts else None


def record_runs():
    rank = distributed.env_rank()
    train_epoch, end_epoch = run_module.Run.train_epoch, run_module.Run.end_epoch

    def patched_train_epoch(self, epoch, monitor=False):
        if JOB['die_at'] is not None and epoch == JOB['die_at'] and rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        if JOB['drift_at'] is not None and epoch == JOB['drift_at'] and rank == 1:
            random.random()
        record, divisions = train_epoch(self, epoch, monitor)
        if JOB['kill_in'] is not None and epoch == JOB['kill_in'] and rank == 0:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        if divisions:
            JOB['log'].write(json.dumps({'epoch': epoch, 'division': [_digest(d.prob, d.pred) for d in divisions],
                                         'labeled': [int(np.sum(d.pred)) for d in divisions]}) + '\n')
        return record, divisions

    def patched_end_epoch(self, record, **state):
        end_epoch(self, record, **state)
        JOB['log'].write(json.dumps({'epoch': self.epoch if self.epoch is not None else record.get('epoch'),
                                     'params': _net_digest(self.nets)}) + '\n')
        JOB['log'].flush()

    run_module.Run.train_epoch, run_module.Run.end_epoch = patched_train_epoch, patched_end_epoch

    if rank != 0:  # every file a non-zero rank opens for writing, outside the job's output folder
        writes = []
        real_open = builtins.open

        def spy_open(file, mode='r', *args, **kwargs):
            path = os.path.abspath(str(file)) if isinstance(file, (str, bytes, os.PathLike)) else None
            if path and any(c in mode for c in 'wax+') and not path.startswith(os.path.abspath(JOB['out'])) \
                    and path != os.devnull:
                writes.append(path)
                with real_open(os.path.join(JOB['out'], 'writes%d.json' % rank), 'w') as f:
                    json.dump(writes, f)
            return real_open(file, mode, *args, **kwargs)
        builtins.open = spy_open
        real_save = torch.save

        def spy_save(obj, f, *args, **kwargs):
            spy_open(f, 'wb').close() if isinstance(f, (str, os.PathLike)) else None
            return real_save(obj, f, *args, **kwargs)
        torch.save = spy_save


def main_run(argv):
    """Jobs separated by '+++', one after the other in these processes: OUT SCRIPT [OPTS] -- ARGS
    [+++ OUT SCRIPT [OPTS] -- ARGS ...]. The process group is kept between jobs (one torchrun start
    for several scripts; a gloo group cannot be left and joined again within one torchrun job).
    A job that exits (cli.run_main's SystemExit: an error every rank reports at the same point) leaves
    its status in OUT/exit<rank>.json and the next job runs; the process exits with the first non-zero
    status. Other failures end the processes (torchrun then stops the job)."""
    jobs, job = [], []
    for a in argv + ['+++']:
        if a == '+++':
            jobs.append(job)
            job = []
        else:
            job.append(a)
    record_runs()
    from dividemix_run.cli import run_main
    shutdown = distributed.shutdown
    codes = []
    for k, job in enumerate(jobs):
        out, script = job[0], job[1]
        opts, args = job[2:job.index('--')], job[job.index('--') + 1:]
        start_job(out, opts)
        distributed.shutdown = shutdown if k == len(jobs) - 1 else (lambda: None)
        if script == 'step':
            main_step(out)
            continue
        if script == 'compile':
            main_compile(out)
            continue
        module = __import__(script)
        patched = {}
        if '--labels_differ' in opts and distributed.env_rank() == 1:
            patched['digest'] = lambda labels: 'another digest'
        if '--tiny' in opts:
            from conftest import tiny_net
            if script == 'Train_clothing1M':
                patched['create_model'] = lambda s, state=None: tiny_net(s.num_class)
            elif script == 'Train_webvision':
                patched['InceptionResNetV2'] = tiny_net
        kept = {name: getattr(module, name) for name in patched}
        vars(module).update(patched)
        try:
            run_main(module.main, args, data_errors=(module.dataloader.DatasetError,))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            vars(module).update(kept)  # the next job runs the script as it is
        codes.append(code)
        with open(os.path.join(out, 'exit%d.json' % distributed.env_rank()), 'w') as f:
            json.dump(code, f)
    sys.exit(next((c for c in codes if c), 0))


def main_step(out):
    """The same global batch and MixUp draws in one process and split over the ranks."""
    import dividemix as dm
    from PreResNet import ResNet18
    os.makedirs(out, exist_ok=True)
    world = distributed.init(torch.device('cpu'))
    distributed.use_processes()  # dividemix.py's multi-process steps, as Run plugs them in
    rank = distributed.rank()
    torch.manual_seed(0)
    nets = [ResNet18(num_classes=4, width=4) for _ in range(2)]
    optimizers = [torch.optim.SGD(n.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4) for n in nets]
    nets = [distributed.convert_bn(n) for n in nets]
    runs = [distributed.wrap(n, torch.device('cpu')) for n in nets]
    g = torch.Generator().manual_seed(1)
    B = 8  # the global labeled batch; unlabeled the same
    x, x2, u, u2 = (torch.randn(B, 3, 32, 32, generator=g) for _ in range(4))
    labels = torch.randint(0, 4, (B,), generator=g)
    w_x = torch.rand(B, generator=g)
    part = distributed.part(B, rank, world)
    warm = torch.randn(2 * B, 3, 32, 32, generator=g)
    warm_labels = torch.randint(0, 4, (2 * B,), generator=g)
    wpart = distributed.part(2 * B, rank, world)

    result = {}
    # warm-up step of net1 (with the confidence penalty: its mean is over the global batch too)
    dm.warmup_pass(runs[0], optimizers[0], [(warm[wpart], warm_labels[wpart], None)], conf_penalty=True)
    result['warmup'] = {k: v.clone() for k, v in nets[0].state_dict().items()}
    cfg = dm.Config(num_class=4, warm_up=1, T=0.5, alpha=4.0, lambda_u=25.0, p_threshold=0.5, batch_size=B)
    perm_gen = torch.Generator().manual_seed(2)
    dm.train_pass(runs[0], runs[1], optimizers[0], [(x[part], x2[part], labels[part], w_x[part])],
                  iter([(u[part], u2[part])]), cfg, epoch=1, num_iter=1, rng=np.random.RandomState(3),
                  randperm=lambda n, device=None: torch.randperm(n, generator=perm_gen))
    result['train'] = {k: v.clone() for k, v in nets[0].state_dict().items()}
    torch.save(result, os.path.join(out, 'step%d.pt' % rank))
    distributed.shutdown()  # main_run keeps the group when a job follows


def main_compile(out):
    """GlobalBatchNorm inside torch.compile: one graph (no break at the collective), eager's numbers."""
    import copy
    os.makedirs(out, exist_ok=True)
    world = distributed.init(torch.device('cpu'))
    rank = distributed.rank()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    net = distributed.convert_bn(net)
    twin = copy.deepcopy(net)
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))[distributed.part(6, rank, world)]
    result = {'global_bn': type(net[1]).__name__}
    y = net(x)
    (y ** 2).mean().backward()
    try:
        compiled = torch.compile(twin, backend='aot_eager', fullgraph=True)
        y2 = compiled(x)
        (y2 ** 2).mean().backward()
        result.update(one_graph=True, max_diff=max(float((y - y2).abs().max()), float(
            (net[0].weight.grad - twin[0].weight.grad).abs().max()), float(
            (net[1].running_var - twin[1].running_var).abs().max())))
    except Exception as e:  # fullgraph: a graph break raises
        result.update(one_graph=False, error=str(e).splitlines()[0][:300])
    with open(os.path.join(out, 'compile%d.json' % rank), 'w') as f:
        json.dump(result, f)


if __name__ == '__main__':
    if sys.argv[1] == 'run':
        main_run(sys.argv[2:])
    else:
        main_step(sys.argv[2])
