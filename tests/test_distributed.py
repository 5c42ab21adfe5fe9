"""torchrun + DistributedDataParallel on the CPU (gloo, 2 processes): the same run as the single
process where it can be, the same division and parameters on every rank, rank 0 alone writing,
exact resume, and no hang when a rank dies. tests/ddp_worker.py is what torchrun starts."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, make_clothing1m, make_webvision
from test_train_cifar import lines

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason='needs torch.distributed with the gloo backend')

WORKER = os.path.join(ROOT, 'tests', 'ddp_worker.py')
CIFAR = ['--num_epochs', '1', '--warm_up', '1', '--width', '4', '--batch_size', '32', '--num_workers', '0',
         '--log_every', '1', '--train_subset', '100', '--test_subset', '20']


# one thread per process, as torchrun sets it for several: the thread count changes the order of float
# sums, and the plain runs compared with torchrun's get the same
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore::FutureWarning')


def torchrun(nproc, argv, cwd, timeout=240):
    """torchrun --standalone (a free port of its own) in a new session, so that a test can kill the
    whole job."""
    env = ENV
    # '--' before the script, as the README says: without it torchrun's parser takes the scripts' --r for an
    # abbreviation of its own options
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc), '--'] + argv
    t0 = time.time()
    done = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=timeout, env=env,
                          start_new_session=True)
    done.seconds = time.time() - t0
    return done


def worker_run(nproc, out, script, args, cwd, opts=()):
    return torchrun(nproc, [WORKER, 'run', str(out), script] + list(opts) + ['--'] + args, cwd)


def records(path):
    """The JSON-line log without the wall-clock field."""
    recs = [json.loads(l) for l in lines(path)]
    for r in recs:
        r.pop('seconds', None)
    return recs


def per_rank(out, rank):
    return [json.loads(l) for l in lines(os.path.join(str(out), 'rank%d.jsonl' % rank))]


def assert_ranks_agree(out, epochs_with_division):
    """Every rank made the same division each epoch and holds the same parameters after it."""
    r0, r1 = per_rank(out, 0), per_rank(out, 1)
    assert r0 == r1
    assert sorted(r['epoch'] for r in r0 if 'division' in r) == epochs_with_division
    assert len([r for r in r0 if 'params' in r]) >= 2
    assert not os.path.exists(os.path.join(str(out), 'writes1.json')), \
        'rank 1 wrote %s' % open(os.path.join(str(out), 'writes1.json')).read()


@pytest.fixture
def one_thread():
    """This process with one thread, as the torchrun processes it is compared with."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def cifar_root(cifar10_module_dir):
    return cifar10_module_dir


@pytest.fixture(scope='module')
def ddp_job(cifar_root, tmp_path_factory):
    """Every 2-process run that can share one torchrun start (each start costs seconds), one job after the
    other in the same processes (tests/ddp_worker.py): the one-step comparison, the compiled
    GlobalBatchNorm, an uninterrupted CIFAR run, Clothing1M / WebVision / Train_folder, and last the runs
    that must stop (the drift job ends the processes). Returns {name: folder}, the finished process."""
    from tiny_data import make_image_folder
    tmp = tmp_path_factory.mktemp('ddp')
    folders = {}

    def job(name, script, args=(), opts=()):
        folders[name] = tmp / name
        return [str(tmp / name / 'out'), script] + list(opts) + ['--'] + list(args)
    jobs = [job('step', 'step'), job('compile', 'compile'),
            # the run has a noise file of its own, so that it is drawn in this run (and rank 1 must not write it)
            job('two', 'Train_cifar', ['--data_path', cifar_root, '--checkpoint_dir', str(tmp / 'two' / 'ck'),
                                       '--noise_file', str(tmp / 'two' / 'noise.json'), '--dump_losses', '1'] + CIFAR)]
    make_clothing1m(str(tmp / 'clothing1m'))
    make_webvision(str(tmp / 'webvision'), num_class=2, per_class=3, n_val=2, n_imagenet=1)
    paths, _, _ = make_image_folder(str(tmp / 'animals'), noisy=(0, 13))
    others = {
        'Train_clothing1M': ['--data_path', str(tmp / 'clothing1m'), '--random_init', '--num_epochs', '1',
                             '--batch_size', '4', '--num_batches', '2', '--eval_batch_size', '4', '--num_workers', '0'],
        'Train_webvision': ['--data_path', str(tmp / 'webvision') + '/', '--num_class', '2', '--num_epochs', '1',
                            '--batch_size', '2', '--num_workers', '0'],
        'Train_folder': ['--data_path', str(tmp / 'animals'), '--arch', 'cnn', '--width', '4', '--num_epochs', '1',
                         '--warm_up', '1', '--batch_size', '8', '--num_workers', '0'],
    }
    for script, a in others.items():
        jobs.append(job(script, script, a + ['--checkpoint_dir', str(tmp / script / 'ck')], ['--tiny']))
    cifar = lambda name: ['--data_path', cifar_root, '--checkpoint_dir', str(tmp / name / 'ck')] + CIFAR
    jobs += [job('bad_input', 'Train_cifar', cifar('bad_input') + ['--batch_size', '15']),
             job('labels', 'Train_cifar', cifar('labels'), ['--labels_differ']),
             job('clothing', 'Train_clothing1M', [
                 '--data_path', str(tmp / 'clothing1m'), '--random_init', '--num_epochs', '2', '--batch_size', '4',
                 '--num_batches', '2', '--eval_batch_size', '4', '--num_workers', '0', '--checkpoint_dir',
                 str(tmp / 'clothing' / 'ck')], ['--tiny', '--drift_at', '1']),
             job('drift', 'Train_cifar', cifar('drift'), ['--drift_at', '0'])]
    argv = [WORKER, 'run']
    for j in jobs:
        argv += (['+++'] if argv[-1] != 'run' else []) + j
    done = torchrun(2, argv, tmp)
    return folders, done, paths


def exit_status(folder):
    """How each rank left a job: its exit status (None: it did not get there)."""
    paths = [os.path.join(str(folder / 'out'), 'exit%d.json' % r) for r in (0, 1)]
    return [json.load(open(p)) if os.path.exists(p) else None for p in paths]


@pytest.fixture(scope='module')
def two_rank_run(ddp_job):
    """One uninterrupted 2-rank CIFAR run (a warm-up epoch, then a DivideMix epoch), and before it the
    one-step comparison and the compiled GlobalBatchNorm."""
    folders, done, _ = ddp_job
    assert exit_status(folders['two']) == [0, 0], done.stderr[-3000:]
    return folders['two'], done


def test_torchrun_with_one_process_is_the_plain_run(cifar_root, tmp_path, one_thread):
    import Train_cifar
    args = ['--data_path', cifar_root, '--r', '0.5'] + CIFAR
    Train_cifar.main(['--checkpoint_dir', str(tmp_path / 'plain')] + args)  # in this process, one thread
    one = torchrun(1, [os.path.join(ROOT, 'Train_cifar.py'), '--checkpoint_dir', str(tmp_path / 'one')] + args,
                   tmp_path)
    assert one.returncode == 0, one.stderr
    for name in ('cifar10_0.5_sym_acc.txt', 'cifar10_0.5_sym_stats.txt'):
        assert open(str(tmp_path / 'plain' / name), 'rb').read() == open(str(tmp_path / 'one' / name), 'rb').read()
    assert records(str(tmp_path / 'plain' / 'cifar10_0.5_sym_log.jsonl')) == \
        records(str(tmp_path / 'one' / 'cifar10_0.5_sym_log.jsonl'))


def test_global_batchnorm_compiles_as_one_graph(ddp_job):
    """--compile under torchrun: GlobalBatchNorm's all-reduce is traced into the graph (fullgraph=True would
    raise at a graph break), and the compiled network computes eager's outputs, gradients and running
    statistics."""
    for rank in (0, 1):
        result = json.load(open(str(ddp_job[0]['compile'] / 'out' / ('compile%d.json' % rank))))
        assert result['global_bn'] == 'GlobalBatchNorm'
        assert result['one_graph'], result.get('error')
        assert result['max_diff'] < 1e-5


def test_two_ranks_divide_and_train_alike_and_only_rank_0_writes(two_rank_run):
    tmp, done = two_rank_run
    assert_ranks_agree(tmp / 'out', [1])
    assert os.path.exists(str(tmp / 'noise.json'))  # drawn and written by rank 0
    # --dump_losses 1: the losses file of epoch 1 too, written by rank 0 alone (assert_ranks_agree: rank 1 wrote
    # nothing)
    assert sorted(os.listdir(str(tmp / 'ck'))) == sorted(
        'cifar10_0.5_sym' + s for s in ('_acc.txt', '_stats.txt', '_log.jsonl', '_settings.json', '_losses_ep001.npz',
                                        '_checkpoint.pth.tar', '_net1.pth.tar', '_net2.pth.tar', '_summary.json'))
    # printed once: rank 1 is silent
    assert done.stdout.count('|   checkpoint_dir   %s\n' % (tmp / 'ck')) == 1  # this job's settings: rank 0 only
    assert '2 processes (torchrun), --batch_size 32 split into 16 per process' in done.stdout
    recs = records(str(tmp / 'ck' / 'cifar10_0.5_sym_log.jsonl'))
    assert [r['epoch'] for r in recs if 'epoch' in r] == [0, 1]
    ckpt = torch.load(str(tmp / 'ck' / 'cifar10_0.5_sym_checkpoint.pth.tar'), weights_only=False)
    assert ckpt['world_size'] == 2 and len(ckpt['rank_states']) == 2
    assert json.load(open(str(tmp / 'ck' / 'cifar10_0.5_sym_settings.json')))['world_size'] == 2


def test_killed_two_rank_run_resumes_exactly(cifar_root, two_rank_run, tmp_path):
    """SIGKILL of the whole job in epoch 1 (trained, nothing of it saved), then --resume under 2 ranks:
    the logs and final nets are those of the uninterrupted run."""
    ck = str(tmp_path / 'ck')
    args = ['--data_path', cifar_root, '--checkpoint_dir', ck] + CIFAR
    killed = worker_run(2, tmp_path / 'out', 'Train_cifar', args, tmp_path, opts=['--kill_in', '1'])
    assert killed.returncode != 0
    assert len(lines(os.path.join(ck, 'cifar10_0.5_sym_acc.txt'))) == 1  # epoch 0 only
    resumed = torchrun(2, [os.path.join(ROOT, 'Train_cifar.py')] + args + ['--resume'], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed from' in resumed.stdout
    ref = two_rank_run[0] / 'ck'
    for name in ('cifar10_0.5_sym_acc.txt', 'cifar10_0.5_sym_stats.txt'):
        assert open(os.path.join(ck, name), 'rb').read() == open(str(ref / name), 'rb').read()
    assert records(os.path.join(ck, 'cifar10_0.5_sym_log.jsonl')) == records(str(ref / 'cifar10_0.5_sym_log.jsonl'))
    for k in (1, 2):
        a = torch.load(os.path.join(ck, 'cifar10_0.5_sym_net%d.pth.tar' % k))
        b = torch.load(str(ref / ('cifar10_0.5_sym_net%d.pth.tar' % k)))
        assert all(torch.equal(a[key], b[key]) for key in b)


def test_resume_under_another_world_size_is_refused(two_rank_run, cifar_root, tmp_path):
    import Train_cifar
    from dividemix_run.cli import UsageError
    ck = str(two_rank_run[0] / 'ck' / 'cifar10_0.5_sym_checkpoint.pth.tar')
    with pytest.raises(UsageError) as e:
        Train_cifar.main(['--data_path', cifar_root, '--checkpoint_dir', str(tmp_path)] + CIFAR +
                         ['--num_epochs', '2', '--resume', ck])
    assert 'written by a run of 2 process(es), this one has 1' in str(e.value)
    assert '--nproc_per_node 2' in str(e.value)


def test_a_rank_that_dies_ends_the_job_and_keeps_the_checkpoint(cifar_root, tmp_path):
    ck = str(tmp_path / 'ck')
    done = worker_run(2, tmp_path / 'out', 'Train_cifar', ['--data_path', cifar_root, '--checkpoint_dir', ck] + CIFAR,
                      tmp_path, opts=['--die_at', '1'])
    assert done.returncode != 0
    assert done.seconds < 60, 'the job took %.0f s to end after rank 1 died' % done.seconds
    from dividemix_run.checkpoints import load_checkpoint
    assert load_checkpoint(os.path.join(ck, 'cifar10_0.5_sym_checkpoint.pth.tar'))['epoch'] == 0


@pytest.fixture(scope='module')
def refused_jobs(ddp_job):
    """Four runs that must stop, the last jobs of the shared torchrun start (tests/ddp_worker.py goes on
    after a job that exits with an error, each job's status in its out/exit<rank>.json): bad input,
    labels that differ, Clothing1M samples that differ, and last the random streams that drift apart
    (rank 0 alone raises there, which ends the processes)."""
    folders, done, _ = ddp_job
    tmp = folders['bad_input'].parent
    return tmp, done, lambda name: exit_status(folders[name])


def test_bad_input_is_reported_once(refused_jobs):
    tmp, done, exit_status = refused_jobs
    assert exit_status('bad_input') == [2, 2]
    assert done.stderr.count('error: --batch_size 15 is the global batch and must split evenly over the 2 '
                             'processes') == 1
    assert not os.path.exists(str(tmp / 'bad_input' / 'ck' / 'cifar10_0.5_sym_log.jsonl'))


def test_labels_that_differ_between_processes_are_refused(refused_jobs):
    tmp, done, exit_status = refused_jobs
    assert exit_status('labels') == [2, 2]
    assert done.stderr.count('error: the noisy training labels differ(s) between the processes of this job') == 1
    assert not os.path.exists(str(tmp / 'labels' / 'ck' / 'cifar10_0.5_sym_log.jsonl'))


def test_clothing1m_samples_that_differ_between_processes_are_refused(refused_jobs):
    """Every process draws Clothing1M's class-balanced eval sample itself; one that drew another sample
    would apply the division to other images. The digest check at co-divide stops the run there,
    before the stream check at the epoch's end, with the message once and epoch 0's checkpoint kept."""
    tmp, done, exit_status = refused_jobs
    assert exit_status('clothing') == [2, 2]
    assert done.stderr.count("error: this epoch's class-balanced sample of Clothing1M differ(s) between the "
                             "processes of this job") == 1, done.stderr[-3000:]
    from dividemix_run.checkpoints import load_checkpoint
    assert load_checkpoint(str(tmp / 'clothing' / 'ck' / 'clothing1m_checkpoint.pth.tar'))['epoch'] == 0


def test_processes_whose_random_streams_drift_apart_are_stopped(refused_jobs):
    """A process that draws one number more than the others would cut other global batches; the
    check after every epoch stops the run before that epoch is saved."""
    tmp, done, exit_status = refused_jobs
    assert done.returncode != 0
    assert exit_status('drift') == [None, None]  # an exception, not an exit: torchrun ended the job
    assert "after epoch 0 the random streams of process 1 differ from process 0's" in done.stderr
    assert 'no checkpoint was written' in done.stderr
    assert not os.path.exists(str(tmp / 'drift' / 'ck' / 'cifar10_0.5_sym_checkpoint.pth.tar'))


@pytest.fixture(scope='module')
def other_scripts(ddp_job):
    """Clothing1M, WebVision (the tests' tiny network) and Train_folder on tiny roots, in the shared start."""
    folders, done, paths = ddp_job
    for script in ('Train_clothing1M', 'Train_webvision', 'Train_folder'):
        assert exit_status(folders[script]) == [0, 0], done.stderr[-3000:]
    return folders['Train_folder'].parent, done, paths


@pytest.mark.parametrize('script', ['Train_clothing1M', 'Train_webvision', 'Train_folder'])
def test_other_scripts_under_two_ranks(script, other_scripts):
    tmp, done, paths = other_scripts
    assert_ranks_agree(tmp / script / 'out', [1])
    assert any(name.endswith('_summary.json') for name in os.listdir(str(tmp / script / 'ck')))
    if script == 'Train_folder':  # own data: the label report holds every sample once, written by rank 0
        import csv
        with open(str(tmp / script / 'ck' / 'animals_label_issues.csv')) as f:
            rows = list(csv.DictReader(f))
        assert sorted(r['path'] for r in rows) == sorted(paths)
        assert sorted(int(r['index']) for r in rows) == list(range(len(paths)))
        assert done.stdout.count('| label report: ') == 1


def test_one_step_under_two_ranks_matches_the_single_process_step(tmp_path, ddp_job):
    """Warm-up step (with the confidence penalty) and DivideMix step of a PreResNet with BatchNorm on
    one global batch: the 2-rank parameters and running statistics equal the single process's within
    1e-5. Not bit-equal: the sums over the batch are added in another order (the observed gap is
    about 1e-7); the step itself moves parameters by far more."""
    import ddp_worker
    ddp_worker.main_step(str(tmp_path / 'one'))  # in this process: no process group
    step = ddp_job[0]['step'] / 'out'  # the 2-process step, run first in the shared job
    one = torch.load(str(tmp_path / 'one' / 'step0.pt'))
    r0, r1 = (torch.load(str(step / ('step%d.pt' % r))) for r in (0, 1))
    for phase in ('warmup', 'train'):
        assert all(torch.equal(r0[phase][k], r1[phase][k]) for k in r0[phase])
        gap = max((one[phase][k].double() - r0[phase][k].double()).abs().max().item() for k in one[phase])
        assert gap < 1e-5, (phase, gap)
    moved = max((one['train'][k].double() - one['warmup'][k].double()).abs().max().item() for k in one['train'])
    assert moved > 1e-3


def test_only_rank_0_writes_the_noise_file(cifar_root, tmp_path, monkeypatch):
    """The other processes draw the same labels from the seed without writing (in the 2-process runs
    above, rank 0 may have written the file before rank 1 looks: this checks rank 1 alone)."""
    import Train_cifar
    s = Train_cifar.build_parser().parse_args(['--data_path', cifar_root, '--noise_file', str(tmp_path / 'n.json')])
    monkeypatch.setenv('RANK', '1')
    labels = Train_cifar.load_data(s).noise_label
    assert not os.path.exists(str(tmp_path / 'n.json')) and os.listdir(str(tmp_path)) == []
    monkeypatch.setenv('RANK', '0')
    assert (Train_cifar.load_data(s).noise_label == labels).all()
    assert os.path.exists(str(tmp_path / 'n.json'))
