"""The run skeleton the three training scripts share, around dividemix.py's Algorithm 1.

    run = Run('Train_cifar', settings, runtime, stem=..., log_files=..., label_digest=..., ...)
    run.build(make_net, cfg, source, weight_decay=5e-4)   # seed, two nets + SGD, resume
    for epoch in run.epochs():
        record, divisions = run.train_epoch(epoch)       # warm-up, or co-divide + co-train
        ...evaluate, write the script's own log line...
        run.end_epoch(record, accs=...)                  # JSON line + atomic checkpoint
    run.finish(summary)

A Run decides between a fresh start and a resume before anything in the output folder
changes, owns the nets, optimizers, loss histories and logs, and writes after every epoch
a checkpoint from which the run continues exactly (bit for bit on the CPU, and on CUDA with
--deterministic; runtime.py says why only there).
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.optim as optim
from sklearn.metrics import roc_auc_score

import dividemix as dm
from . import distributed
from .checkpoints import (FORMAT, atomic_save, forked_rng, remove_stale_temporaries, rng_state, seed_everything,
                          set_rng_state)
from .cli import UsageError, check_file_names, check_writable_folder, print_settings
from . import logs
from .lock import RunLock
from .logs import NullLog, RunLog, progress_bars
from .resume import checkpoint_to_resume
from .signals import StopOnSignal


def algorithm_config(s, **script_specific):
    """dividemix.Config from a run's settings (the flags named after the paper's symbols)."""
    return dm.Config(num_class=s.num_class, warm_up=s.warm_up, batch_size=s.batch_size, T=s.T, alpha=s.alpha,
                     lambda_u=s.lambda_u, p_threshold=s.p_threshold, gmm_seed=None if s.unseeded_gmm else s.seed,
                     **script_specific)


def division_stats(prob, pred, clean):
    """How good a division is, against the truly clean samples (clean: bool (N,)).
    labeled: size of the labeled set; auc: ROC AUC of prob for 'clean' (NaN if only one
    class exists); precision: clean fraction of the labeled set; recall: fraction of the
    clean samples that are labeled."""
    prob, pred, clean = np.asarray(prob, np.float64), np.asarray(pred, bool), np.asarray(clean, bool)
    auc = float(roc_auc_score(clean, prob)) if clean.any() and not clean.all() else float('nan')
    n_labeled = int(pred.sum())
    precision = float(clean[pred].mean()) if n_labeled else float('nan')
    recall = float(pred[clean].mean()) if clean.any() else float('nan')
    return {'labeled': n_labeled, 'auc': auc, 'precision': precision, 'recall': recall}


def summarize(accs):
    """best, last and mean of the last 10 epochs' accuracy (%)."""
    if not accs:
        return {'best': float('nan'), 'last': float('nan'), 'mean_last10': float('nan'), 'epochs': 0}
    return {'best': max(accs), 'last': accs[-1], 'mean_last10': float(np.mean(accs[-10:])), 'epochs': len(accs)}


class Run(object):
    """One training run of two networks; a context manager (`with Run(...) as run:`) that holds the
    run's lock (lock.py), stops in order on SIGTERM/SIGINT (signals.py), and on the way out says which
    checkpoint is left (for the exit message) and releases everything. Whether and from what it
    resumes is resume.py's.

    script: the script's name (recorded in the checkpoint; a checkpoint of another script is
    refused). settings: cli.Settings. stem: output path without suffix. log_files: name ->
    path of the text logs and the JSON lines ('json'). label_digest: what resume compares.
    name: the progress bars' prefix. title, notes, info: printed at the start. extra_settings:
    recorded in <stem>_settings.json next to the settings (fresh runs). read_only: only load the
    checkpoint (--resume) for a look at the nets: no log, no settings file, nothing trained.
    dry_run (--dry_run): every check a real start makes (file names, folders, lock, resume, logs), with
    nothing written, taken or changed; then the script prints plan() and returns.
    """

    def __init__(self, script, settings, runtime, *, stem, log_files, label_digest, name, title, notes=(), info=(),
                 extra_settings=None, read_only=False, dry_run=False):
        self.script, self.s, self.runtime, self.stem, self.name = script, settings, runtime, stem, name
        self.label_digest, self.dry_run, self.title, self.notes, self.info = label_digest, dry_run, title, notes, info
        self.log_files = log_files
        self.ckpt_path = stem + '_checkpoint.pth.tar'
        self.epoch = self.saved_epoch = self.log = self.device_note = None
        self.signals = StopOnSignal()  # a signal during a save waits for its end (end_epoch)
        self.world = distributed.init(runtime.device)  # torchrun: join the process group (after the checks)
        distributed.use_processes()  # dividemix.py's steps for one process, or for several
        self.main = distributed.is_main()
        if settings.batch_size % self.world:
            raise UsageError('--batch_size %d is the global batch and must split evenly over the %d processes: '
                             'pass a multiple of %d' % (settings.batch_size, self.world, self.world))
        distributed.check_same(str(label_digest), 'the noisy training labels', UsageError)
        self.lock = RunLock(stem + '.lock')
        board = (os.path.join(settings.tensorboard, os.path.basename(stem))
                 if settings.get('tensorboard') is not None else None)
        error = None
        if self.main:  # rank 0 checks the paths, holds the lock and writes; the others learn whether it could
            try:
                # every path the run writes, before anything is written or replaced
                check_file_names(stem, settings)
                if board is not None and not read_only:
                    check_writable_folder(board, 'the --tensorboard folder', 'pass a folder the run can write, or leave '
                                                                             'out --tensorboard', create=not dry_run)
                if dry_run:
                    self.lock.check_free()
                else:
                    self.lock.acquire()
            except UsageError as e:
                error = e
        if not distributed.all_true(error is None):
            raise error or UsageError('rank 0 could not start the run (it says why)')
        self.ckpt = None
        try:
            if self.main and not dry_run:
                remove_stale_temporaries([self.ckpt_path] + ['%s_net%d.pth.tar' % (stem, k) for k in (1, 2)])
            self.ckpt, self.resumed_from, self.device_note = checkpoint_to_resume(
                script, settings, self.ckpt_path, label_digest, self.world, runtime.device.type, read_only)
            start_epoch = self.ckpt['epoch'] + 1 if self.ckpt is not None else 0
            if self.ckpt is not None:
                self.saved_epoch = self.ckpt['epoch']
            if read_only and self.ckpt is None:
                raise UsageError('nothing to read: pass --resume (this run\'s latest checkpoint) or --resume PATH')
            if dry_run:
                if self.ckpt is not None:
                    for key, path in log_files.items():
                        logs.check_resumable(path, int(self.ckpt['log_offsets'].get(key, 0)))
            elif not read_only:
                self.log = (RunLog(log_files, offsets=None if self.ckpt is None else self.ckpt['log_offsets'],
                                   tensorboard=board, start_epoch=start_epoch) if self.main else NullLog())
        except BaseException as e:
            # what the exit message says of the files (cli.run_main): a signal while a resume starts up
            # leaves the checkpoint as it was
            if self.ckpt is not None:
                e.checkpoint, e.saved_epoch = self.resumed_from, self.ckpt['epoch']
            elif settings.get('resume') is not None:
                e.resume_from = self.ckpt_path if settings.resume == 'auto' else settings.resume
            self.lock.release()
            raise
        if dry_run:
            return  # plan() prints the settings, with their sources
        print_settings(title, settings.as_dict(), notes)
        for line in info:
            print('| ' + line)
        if self.device_note:
            print('| note: ' + self.device_note)
        if self.world > 1:
            print('| %d processes (torchrun), --batch_size %d split into %d per process; BatchNorm statistics %s'
                  % (self.world, settings.batch_size, settings.batch_size // self.world,
                     'per process (--no_sync_bn)' if settings.get('no_sync_bn') else 'over the global batch'))
        if self.ckpt is None and self.main and not read_only:
            with open(stem + '_settings.json', 'w') as f:
                logs.dump(dict(settings.as_dict(), **dict(extra_settings or {}, torch=torch.__version__,
                                                          device_name=runtime.describe(), world_size=self.world)),
                          f, indent=1, sort_keys=True)

    def __enter__(self):
        self.signals.__enter__()
        return self

    def __exit__(self, etype, e, tb):
        self.signals.__exit__(etype, e, tb)
        if e is not None:  # what the exit message tells (cli.run_main)
            e.checkpoint = self.ckpt_path if self.saved_epoch is not None else None
            e.saved_epoch = self.saved_epoch
            if not isinstance(e, dm.DivergenceError):
                e.epoch = self.epoch
        if self.log is not None:
            self.log.close()
        self.lock.release()
        if e is None:
            distributed.shutdown()
        return False

    @property
    def fresh(self):
        return self.ckpt is None

    @property
    def state(self):
        """The script's own state saved with the last checkpoint ({} on a fresh start)."""
        return self.ckpt or {}

    # ------------------------------------------------------------------ nets, optimizers, algorithm

    def build(self, make_net, cfg, source, *, weight_decay, batch_sizes=(), clean=None, stats_line=None,
              first_division=None):
        """Seed every stream, build the two nets (make_net() twice) and their SGD optimizers
        (momentum 0.9), and load the checkpoint's state when resuming.

        cfg: dividemix.Config. source: a data_sources.DataSource. batch_sizes: the batch sizes
        to compile for (--compile). clean: the truly clean mask, when known (division AUC,
        precision, recall). stats_line(stats) -> the line for the stats log of each division a
        net trains on, or None. first_division(epoch, divisions, record) -> Config: called once, at
        the next co-divide, before anything trains on it; the Config it returns is the algorithm's
        from then on, and the divisions' labeled sets are cut again at its p_threshold (--r auto)."""
        s = self.s
        seed_everything(s.seed)
        print('| Building net')
        self.nets = [self.runtime.model(make_net()) for _ in range(2)]
        self.optimizers = [optim.SGD(net.parameters(), lr=s.lr, momentum=0.9, weight_decay=weight_decay)
                           for net in self.nets]
        # what forwards go through: under torchrun DDP (GlobalBatchNorm unless --no_sync_bn), each process
        # running its part of every batch; with --compile, the compiled net
        sync_bn = not s.get('no_sync_bn')
        self.nets = [distributed.convert_bn(net, sync_bn) for net in self.nets]
        self.runs = [self.runtime.runner(distributed.wrap(net, self.runtime.device),
                                         [b // self.world for b in batch_sizes] if self.world > 1 else batch_sizes)
                     for net in self.nets]
        self.cfg, self.source, self.clean, self.stats_line = cfg, source, clean, stats_line
        self.first_division = first_division
        self.histories = dm.new_histories()
        self.start_epoch = 0
        if self.ckpt is not None:
            ckpt = self.ckpt
            for k in range(2):
                self.nets[k].load_state_dict(ckpt['net%d' % (k + 1)])
                self.optimizers[k].load_state_dict(ckpt['optimizer%d' % (k + 1)])
                self.histories[k].extend(ckpt['history'][k])
            if self.world > 1:  # every process's own streams
                mine = ckpt['rank_states'][distributed.rank()]
                set_rng_state(mine['rng'])
                source.load_state_dict(mine['source'])
            else:
                set_rng_state(ckpt['rng'])
                if ckpt.get('format', 1) == 1:  # format 1 kept the device pipeline's generator with the global ones
                    pipeline = ckpt['rng'].get('generators', {}).get('pipeline')
                    source.load_state_dict({} if pipeline is None else {'generator': pipeline})
                else:
                    source.load_state_dict(ckpt['source'])
            self.start_epoch = ckpt['epoch'] + 1
            print('| resumed from %s after epoch %d%s' % (
                self.resumed_from, ckpt['epoch'], '' if self.runtime.device.type == 'cpu' or self.runtime.deterministic
                else ' (on CUDA without --deterministic the continuation is the same run statistically, not bit '
                     'for bit)'))
        return self

    # ------------------------------------------------------------------ --dry_run

    def plan(self, parser, argv, make_net, *, data=(), schedule=(), notes=()):
        """--dry_run: print what this run would do (nothing is built on the device, nothing written).
        parser, argv: the script's, for where each setting came from. make_net() builds one network (its
        parameters are counted; a resume's weights are loaded into it, as the run would). data, schedule,
        notes: the script's lines."""
        from . import plan
        s = self.s
        net = make_net()
        if self.ckpt is not None:  # every process, so that every one exits as rank 0 does
            try:
                net.load_state_dict(self.ckpt['net1'])
            except (RuntimeError, KeyError) as e:
                raise UsageError('cannot resume from %s: its networks do not fit the one this run builds (%s); '
                                 'resume with the checkpoint\'s settings, or start a new run'
                                 % (self.resumed_from, str(e).splitlines()[0][:200])) from None
        if not self.main:
            return
        print('| Dry run: %s (nothing is written or changed)' % self.title)
        sources = plan.setting_sources(parser, argv, s.as_dict(), self.notes)
        print('| settings (with where each value came from):')
        for k in sorted(s.as_dict()):
            print('|   %-16s %-14s (%s)' % (k, s.get(k), sources[k]))
        for n in self.notes:
            print('| note: ' + n)
        for line in list(self.info) + list(data):
            print('| ' + line)
        print('| network: ' + plan.describe_net(net))
        for line in schedule:
            print('| ' + line)
        print('| processes: %s' % ('%d (torchrun), --batch_size %d split into %d per process'
                                   % (self.world, s.batch_size, s.batch_size // self.world) if self.world > 1 else
                                   '1 (torchrun runs several: docs/distributed.md)'))
        if self.device_note:
            print('| note: ' + self.device_note)
        folder = os.path.dirname(self.stem) or '.'
        names = sorted(os.path.basename(p) for p in self.log_files.values())
        if self.ckpt is not None:
            done = self.ckpt['epoch']
            print('| resume: from %s after epoch %d: %s, appending to %s in %s'
                  % (self.resumed_from, done, 'epochs %d..%d' % (done + 1, s.num_epochs) if done < s.num_epochs else
                     'no epoch left to train (the run is complete; it writes its final files again)',
                     ', '.join(names), folder))
        else:
            print('| output: %s (%s): %s, %s_settings.json, %s_checkpoint.pth.tar after every epoch, the nets at the '
                  'end%s' % (folder, plan.folder_state(folder), ', '.join(names), os.path.basename(self.stem),
                             os.path.basename(self.stem), '' if s.get('overwrite') is not True or not os.path.exists(
                                 self.ckpt_path) else '; --overwrite replaces the run there'))
        for n in notes:
            print('| note: ' + n)
        print('| dry run: every check passed; nothing was written or changed. The same command without --dry_run '
              'starts the run.')
        sys.stdout.flush()

    def epochs(self):
        return range(self.start_epoch, self.s.num_epochs + 1)

    def is_warmup(self, epoch):
        return epoch < self.s.warm_up or self.s.get('method') == 'ce'  # --method ce: every epoch a warm-up

    # ------------------------------------------------------------------ one epoch of Algorithm 1

    def train_epoch(self, epoch, monitor=False):
        """Set the epoch's learning rate, then warm up both nets, or co-divide and co-train.
        monitor: in a warm-up epoch, also divide afterwards (statistics only; every random
        stream is left as it was, so training is unchanged). Returns (JSON record so far,
        the epoch's divisions or None)."""
        s, cfg, nets = self.s, self.cfg, self.runs
        self._t0 = time.time()
        self.epoch = epoch
        lr = dm.learning_rate(epoch, s.lr, s.lr_decay_epoch)
        dm.set_lr(self.optimizers, lr)
        record = {'epoch': epoch, 'lr': lr, 'phase': 'warmup' if self.is_warmup(epoch) else 'train'}
        common = dict(autocast=self.runtime.autocast, check_every=s.log_every * 5,
                      progress=progress_bars('%s | Epoch %d' % (self.name, epoch), s.log_every))
        divisions = None
        if self.is_warmup(epoch):
            record.update(dm.warmup(nets, self.optimizers, self.source, cfg, epoch=epoch, **common))
            if monitor:
                with forked_rng(self.source):
                    divisions = dm.co_divide(nets, self.source, cfg, epoch=epoch, autocast=self.runtime.autocast)
            stats = self._division_stats(divisions)
        else:
            divisions = dm.co_divide(nets, self.source, cfg, epoch=epoch, histories=self.histories,
                                     autocast=self.runtime.autocast)
            if self.first_division is not None:  # settings that wait for the first division (--r auto)
                cfg = self.cfg = self.first_division(epoch, divisions, record)
                self.first_division = None
                for d in divisions:
                    d.pred = d.prob > cfg.p_threshold
            stats = self._division_stats(divisions)
            for k in range(2):  # net k trains on the division made by its peer
                peer = 1 - k
                if self.stats_line is not None:
                    self.log.write('stats', self.stats_line(stats[peer]))
                self._warn_if_empty(epoch, divisions[peer], k)
            record.update(dm.co_train(nets, self.optimizers, self.source, divisions, cfg, epoch=epoch, **common))
        for k, st in enumerate(stats):
            record.update({key + str(k + 1): value for key, value in st.items()})
        self._check_weights(epoch)
        return record, divisions

    def _check_weights(self, epoch):
        """Non-finite weights (a divergence the losses did not show) stop the run before anything is
        evaluated, saved as best, or checkpointed."""
        for k, net in enumerate(self.nets):
            values = [t for t in net.state_dict().values() if t.is_floating_point()]
            finite = torch.stack([torch.isfinite(t).all() for t in values]).all()
            if not bool(finite):
                raise dm.DivergenceError('the weights of net%d' % (k + 1), epoch)

    def _division_stats(self, divisions):
        if divisions is None:
            return []
        if self.clean is None:
            return [{'labeled': d.num_labeled} for d in divisions]
        return [division_stats(d.prob, d.pred, self.clean) for d in divisions]

    @staticmethod
    def _warn_if_empty(epoch, division, k):
        if not distributed.is_main():
            return
        if division.num_labeled == 0:
            print('warning: epoch %d: the division by net%d labels no sample as clean; net%d is not trained this '
                  'epoch' % (epoch, division.net + 1, k + 1), file=sys.stderr)
        elif division.num_unlabeled == 0:
            print('warning: epoch %d: the division by net%d labels every sample as clean; net%d trains on labeled '
                  'samples only (Lu = 0)' % (epoch, division.net + 1, k + 1), file=sys.stderr)

    def test(self, split='test', nets=(0, 1), topk=(1,)):
        """Top-k accuracy (%) of the ensemble of `nets` on a clean split of the source."""
        return dm.ensemble_accuracy([self.runs[k] for k in nets], self.source.test_batches(split), topk=topk,
                                    autocast=self.runtime.autocast, epoch=self.epoch)

    # ------------------------------------------------------------------ after each epoch, at the end

    def end_epoch(self, record, **state):
        """Write the epoch's JSON line, then an atomic checkpoint holding `state` (the script's own:
        accuracies so far, best weights' accuracy, ...) and everything else the run needs."""
        epoch = record['epoch']
        record['seconds'] = round(time.time() - self._t0, 3)
        self.log.json('json', record)
        sys.stdout.flush()
        ranks = distributed.gather_objects({'rng': rng_state(), 'source': self.source.state_dict()})
        if self.main and self.world > 1:
            # every process draws the same shuffles, augmentations and MixUp numbers; streams that have
            # drifted apart would train on wrongly cut batches, so stop before saving such an epoch
            for r in range(1, self.world):
                if not distributed.same_streams(ranks[r], ranks[0]):
                    raise RuntimeError('after epoch %d the random streams of process %d differ from process '
                                       "0's (code that draws random numbers on some processes only?); %s"
                                       % (epoch, r, 'no checkpoint was written' if self.saved_epoch is None else
                                          'the checkpoint of epoch %d is kept' % self.saved_epoch))
        if self.main:
            ckpt = {'format': FORMAT, 'script': self.script, 'epoch': epoch, 'settings': self.s.as_dict(),
                    'device_type': self.runtime.device.type,
                    'label_digest': self.label_digest, 'rng': ranks[0]['rng'], 'source': ranks[0]['source'],
                    'log_offsets': self.log.offsets(), 'history': [list(h) for h in self.histories]}
            if self.world > 1:  # every process's random streams, to continue each of them
                ckpt.update(world_size=self.world, rank_states=ranks)
            for k in range(2):
                ckpt['net%d' % (k + 1)] = self.nets[k].state_dict()
                ckpt['optimizer%d' % (k + 1)] = self.optimizers[k].state_dict()
            ckpt.update(state)
        with self.signals.saving():  # SIGTERM/SIGINT wait until the file and saved_epoch (the exit message) agree
            if self.main:
                atomic_save(ckpt, self.ckpt_path)
            self.saved_epoch = epoch
        distributed.barrier()  # no process starts the next epoch before this checkpoint is on disk

    def record_settings(self, **values):
        """Add values the run resolved after its start to <stem>_settings.json (atomically; rank 0)."""
        if not self.main:
            return
        path = self.stem + '_settings.json'
        try:
            with open(path) as f:
                settings = json.load(f)
        except (OSError, ValueError):  # removed or damaged since the start: what is known now
            settings = {}
        settings.update(values)
        with open(path + '.tmp', 'w') as f:
            logs.dump(settings, f, indent=1, sort_keys=True)
        os.replace(path + '.tmp', path)

    def save_nets(self, paths=None):
        """Save both nets' state dicts (default <stem>_net1.pth.tar, <stem>_net2.pth.tar)."""
        paths = paths or ['%s_net%d.pth.tar' % (self.stem, k + 1) for k in range(2)]
        for net, path in zip(self.nets, paths):
            atomic_save(net.state_dict(), path)

    def finish(self, summary, summary_file=None):
        """The last JSON line {'summary': summary}, then <stem>_summary.json (summary_file, or summary)."""
        self.log.json('json', {'summary': summary})
        self.log.close()
        self.log = None
        if self.main:
            with open(self.stem + '_summary.json', 'w') as f:
                logs.dump(summary if summary_file is None else summary_file, f, indent=1)
