"""DivideMix (Li, Socher, Hoi, "DivideMix: Learning with Noisy Labels as Semi-supervised
Learning", ICLR 2020): Algorithm 1, whole, in one file.

Stand-alone: imports only torch, numpy and scikit-learn; no argparse, no printing, no global
but the seam for several processes (the end of the file), so it can be copied into other code as
is. Names follow the paper: T (sharpening
temperature), alpha (MixUp's Beta parameter), lambda_u (weight of the unlabeled loss),
p_threshold (clean-probability threshold), w_x (a labeled sample's clean probability).

One run, two networks (README, "Using the pieces", runs this loop as written):

    cfg = Config(num_class=10, warm_up=10, lambda_u=25, p_threshold=0.5, batch_size=64)
    nets, optimizers = (net1, net2), (opt1, opt2)
    histories = new_histories()
    for epoch in range(301):
        set_lr(optimizers, learning_rate(epoch, 0.02, decay_epoch=150))
        if epoch < cfg.warm_up:
            warmup(nets, optimizers, source, cfg, epoch=epoch)       # cross-entropy on the noisy labels
        else:
            divisions = co_divide(nets, source, cfg, histories=histories)   # per-sample loss -> GMM, both nets
            co_train(nets, optimizers, source, divisions, cfg, epoch=epoch)  # net1 on net2's division, then
        acc = ensemble_accuracy(nets, source.test_batches())[0]             #   net2 on net1's; test: net1 + net2

`source` is anything with these methods (dividemix_run/data_sources.py has the project's);
batches are tensors on the device:
    warmup_batches(k)        -> iterable of (x, noisy_label, index): net k's warm-up pass
    eval_batches(k)          -> iterable of (x, noisy_label, index): the samples net k divides,
                                each once, index 0..n-1 (for CIFAR all of the training set)
    train_batches(division)  -> (labeled, unlabeled, num_labeled) for a Division:
                                labeled: iterable of (x, x2, noisy_label, w_x), one pass;
                                unlabeled: endless iterator of (u, u2), or None when empty
    test_batches(split)      -> iterable of (x, label)
    randperm(n, device)      -> LongTensor, the MixUp partner permutation

Everything marked "kept quirk" reproduces the reference on purpose: results depend on it.
"""
import collections
import contextlib
import dataclasses
import warnings
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture


@dataclasses.dataclass(frozen=True)
class Config:
    """The algorithm's hyper-parameters (defaults: the reference's CIFAR ones)."""
    num_class: int
    warm_up: int                   # epochs 0..warm_up-1 are cross-entropy warm-up
    batch_size: int = 64           # B: labeled batch (warm-up batches are 2B); also sets num_iter
    T: float = 0.5                 # sharpening temperature
    alpha: float = 4.0             # MixUp: l ~ Beta(alpha, alpha)
    lambda_u: float = 25.0         # weight of the unlabeled loss, reached after the ramp-up
    p_threshold: float = 0.5       # labeled = clean probability above this
    mix_unlabeled: bool = True     # CIFAR: mix all 4B rows, loss Lx + lambda * Lu + penalty; False
                                   # (Clothing1M, WebVision): mix the 2B labeled rows only, Lx + penalty
    rampup_length: int = 16        # epochs over which lambda goes from 0 to lambda_u after warm-up
    conf_penalty: bool = False     # warm-up: add the negative-entropy confidence penalty
    loss_window: int = 1           # GMM input: mean of the last loss_window normalised loss vectors
                                   # (kept quirk: the reference uses 5 only when r == 0.9)
    gmm_seed: Optional[int] = None  # random_state of the GMM; None is the reference's unseeded GMM


class DivergenceError(RuntimeError):
    """A loss, an output or a weight became NaN or infinite: phase says where, iteration when."""

    def __init__(self, phase, epoch, iteration=None):
        self.phase, self.epoch, self.iteration = phase, epoch, iteration
        where = '' if epoch is None else ' at epoch %d' % epoch
        where += '' if iteration is None else ', iteration %d' % iteration
        what = 'non-finite values (NaN or inf) in' if iteration is None else 'non-finite loss (NaN or inf) in'
        super().__init__('%s %s%s' % (what, phase, where))


# ---- Small pieces ------------------------------------------------------------------------------

def sharpen(p, T):
    """Temperature sharpening: p^(1/T) / sum_c p^(1/T). p: (B, C) probabilities."""
    pt = p ** (1 / T)
    return pt / pt.sum(dim=1, keepdim=True)


def linear_rampup(current, warm_up, lambda_u, rampup_length=16):
    """lambda_u * clip((current - warm_up) / rampup_length, 0, 1), current = epoch + batch_idx / num_iter."""
    return lambda_u * float(np.clip((current - warm_up) / rampup_length, 0.0, 1.0))


def neg_entropy(logits):
    """Confidence penalty mean_i sum_c p_ic log p_ic (negative entropy): the warm-up loss for asymmetric
    noise adds it, so the nets do not become over-confident."""
    probs = torch.softmax(logits, dim=1)
    return torch.mean(torch.sum(probs.log() * probs, dim=1))


def uniform_prior_penalty(logits, num_class):
    """sum_c pi_c log(pi_c / mean_i p_ic), pi uniform: the mean prediction must not collapse onto few classes."""
    prior = torch.ones(num_class, device=logits.device) / num_class
    pred_mean = torch.softmax(logits.float(), dim=1).mean(0)
    return torch.sum(prior * torch.log(prior / pred_mean))


def soft_cross_entropy(logits, targets):
    """-mean_i sum_c log_softmax(logits)_ic * targets_ic, for soft (mixed) targets."""
    return -torch.mean(torch.sum(F.log_softmax(logits.float(), dim=1) * targets, dim=1))


def semi_loss(logits_x, targets_x, logits_u, targets_u):
    """Lx: soft cross-entropy on the labeled rows; Lu: mean((softmax(logits_u) - targets_u)^2) over all entries."""
    Lx = soft_cross_entropy(logits_x, targets_x)
    Lu = torch.mean((torch.softmax(logits_u.float(), dim=1) - targets_u) ** 2)
    return Lx, Lu


def sample_mix_lambda(alpha, rng=np.random):
    """l ~ Beta(alpha, alpha), l = max(l, 1 - l): a mix stays closer to its first row (keeps its role)."""
    l = rng.beta(alpha, alpha)
    return max(l, 1 - l)


@torch.no_grad()
def co_guess(net, net2, inputs_u, inputs_u2, T):
    """Label co-guessing for unlabeled samples: average the softmax of both nets on both
    views, then sharpen. (B, ...) x 2 -> targets_u (B, C).
    Kept quirk: `net` is in train mode here, so these no-grad forwards use batch
    statistics and update its BatchNorm running averages."""
    pu = (torch.softmax(net(inputs_u).float(), dim=1) + torch.softmax(net(inputs_u2).float(), dim=1)
          + torch.softmax(net2(inputs_u).float(), dim=1) + torch.softmax(net2(inputs_u2).float(), dim=1)) / 4
    return sharpen(pu, T)


@torch.no_grad()
def co_refine(net, inputs_x, inputs_x2, labels_x, w_x, T):
    """Label co-refinement for labeled samples: px = mean softmax of `net` on both views,
    px = w_x * onehot + (1 - w_x) * px, then sharpen. labels_x (B, C) one-hot, w_x (B, 1).
    Same train-mode BatchNorm quirk as co_guess."""
    px = (torch.softmax(net(inputs_x).float(), dim=1) + torch.softmax(net(inputs_x2).float(), dim=1)) / 2
    px = w_x * labels_x + (1 - w_x) * px
    return sharpen(px, T)


def mixmatch(all_inputs, all_targets, l, idx, num_mixed=None):
    """mixed = l * x + (1 - l) * x[idx] for rows [:num_mixed] (all when None); with num_mixed = 2B only the
    labeled rows are mixed, their partners from the whole batch (the Clothing1M/WebVision variant)."""
    n = all_inputs.size(0) if num_mixed is None else num_mixed
    mixed_input = l * all_inputs[:n] + (1 - l) * all_inputs[idx][:n]
    mixed_target = l * all_targets[:n] + (1 - l) * all_targets[idx][:n]
    return mixed_input, mixed_target


def num_iterations(num_labeled, batch_size):
    """The reference's num_iter = len(labeled) // batch_size + 1 (one more than the number of
    full batches, even when the division is exact: kept quirk, it only scales the ramp-up)."""
    return num_labeled // batch_size + 1


def learning_rate(epoch, lr, decay_epoch):
    """The step schedule of all three setups: lr until decay_epoch, lr / 10 from then on."""
    return lr / 10 if epoch >= decay_epoch else lr


def set_lr(optimizers, lr):
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group['lr'] = lr


class _NonFiniteWatch(object):
    """The first iteration with a non-finite loss, kept without a sync per step; check() syncs (every
    `every` steps, and at the end of a pass) and raises DivergenceError."""

    def __init__(self, phase, epoch, every):
        self.phase, self.epoch, self.every = phase, epoch, max(1, every)
        self.first_bad = None

    def update(self, loss, batch_idx):
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, batch_idx), self.first_bad)
        if (batch_idx + 1) % self.every == 0:
            self.check()

    def check(self):
        first = -1 if self.first_bad is None else int(self.first_bad.item())
        if first >= 0:
            raise DivergenceError(self.phase, self.epoch, first + 1)


def _passes(progress):
    """progress(what, total) -> context manager giving on_step(batch_idx, metrics), or None."""
    return progress if progress is not None else (lambda what, total: contextlib.nullcontext())


def _length(batches):
    return len(batches) if hasattr(batches, '__len__') else None


# ---- Warm-up: cross-entropy on the noisy labels ------------------------------------------------

def warmup_pass(net, optimizer, batches, *, epoch=0, conf_penalty=False, autocast=contextlib.nullcontext,
                on_step=None, check_every=50):
    """One pass of cross-entropy (+ negative-entropy confidence penalty when conf_penalty).
    batches: iterable of (inputs, labels, index). on_step(batch_idx, metrics), metrics a
    dict of 0-d tensors, is for progress display. Returns {'loss': mean CE, 'steps': n}."""
    net.train()
    watch = _NonFiniteWatch('warm-up', epoch, check_every)
    total, steps = None, 0
    for batch_idx, (inputs, labels, _) in enumerate(batches):
        optimizer.zero_grad()
        with autocast():
            outputs = net(inputs)
        loss, L = _processes().warmup_loss(outputs.float(), labels, conf_penalty)
        L.backward()
        optimizer.step()
        watch.update(L, batch_idx)
        total = loss.detach() if total is None else total + loss.detach()
        steps += 1
        if on_step is not None:
            on_step(batch_idx, {'CE-loss': loss.detach()})
    watch.check()
    return {'loss': float(total) / steps if steps else float('nan'), 'steps': steps}


def warmup(nets, optimizers, source, cfg, *, epoch, autocast=contextlib.nullcontext, progress=None,
           check_every=50):
    """Warm up net1, then net2, each on its own pass of source.warmup_batches(k).
    Returns {'loss1': .., 'loss2': ..} (mean cross-entropy of each pass)."""
    record = {}
    for k in range(2):
        batches = source.warmup_batches(k)
        with _passes(progress)('warm-up net%d' % (k + 1), _length(batches)) as on_step:
            out = warmup_pass(nets[k], optimizers[k], batches, epoch=epoch, conf_penalty=cfg.conf_penalty,
                              autocast=autocast, on_step=on_step, check_every=check_every)
        record['loss%d' % (k + 1)] = out['loss']
    return record


# ---- Co-divide: per-sample losses -> two-component GMM -> clean probability --------------------

@dataclasses.dataclass
class Division:
    """The division net `net` made (the other net trains on it), over the n samples it divided: prob (n,)
    clean probability (float64), pred = prob > p_threshold (labeled), losses (n,) normalised, input_loss
    (n, 1) what the GMM saw, and the gmm."""
    net: int
    prob: np.ndarray
    pred: np.ndarray
    losses: torch.Tensor
    input_loss: np.ndarray
    gmm: GaussianMixture

    @property
    def num_labeled(self):
        return int(self.pred.sum())

    @property
    def num_unlabeled(self):
        return int(self.pred.size - self.pred.sum())


@torch.no_grad()
def per_sample_losses(net, batches, autocast=contextlib.nullcontext):
    """Cross-entropy of every sample against its noisy label, eval mode, at the sample's index; batches of
    (inputs, targets, index) cover 0..n-1 once each. Returns a float32 CPU tensor (n,)."""
    net.eval()
    indices, losses = [], []
    for inputs, targets, index in batches:
        with autocast():
            outputs = net(inputs)
        losses.append(F.cross_entropy(outputs.float(), targets, reduction='none'))
        indices.append(index.to(losses[-1].device))
    index, values = _processes().losses_at(indices, losses, next(net.parameters()).device)
    if not values.numel():
        return torch.zeros(0)
    out = torch.zeros(values.numel(), device=values.device)
    out[index] = values  # one vectorised scatter
    return out.cpu()


def normalize_losses(losses):
    """Min-max normalise to [0, 1]; a constant vector becomes zeros (the reference: 0/0, NaN to the GMM)."""
    span = losses.max() - losses.min()
    if span <= 0:
        return torch.zeros_like(losses)
    return (losses - losses.min()) / span


def fit_gmm(input_loss, reg_covar=5e-4, random_state=None):
    """Two-component 1-D GMM as the reference fits it (max_iter=10, tol=1e-2). input_loss (N, 1).
    Returns (prob, gmm), prob the posterior of the smaller-mean component: the probability that
    each sample is clean. random_state=None is the reference's unseeded GMM. In float64, as the
    reference's float32 torch tensor became inside scikit-learn (docs/differences.md)."""
    input_loss = np.asarray(input_loss, dtype=np.float64)
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=reg_covar, random_state=random_state)
    with warnings.catch_warnings():
        # max_iter=10 rarely converges to tol; the reference ran it like this on purpose
        warnings.simplefilter('ignore', ConvergenceWarning)
        gmm.fit(input_loss)
    prob = gmm.predict_proba(input_loss)[:, gmm.means_.argmin()]
    return prob, gmm


def new_histories(window=5):
    """The two nets' loss histories; only the last few vectors are ever used."""
    return [collections.deque(maxlen=window), collections.deque(maxlen=window)]


def eval_train(net, batches, cfg, *, history=None, net_index=0, epoch=None, autocast=contextlib.nullcontext):
    """Per-sample losses -> min-max normalise -> (history average) -> GMM -> a Division. history: the list
    or deque the normalised losses are appended to (the caller keeps it across epochs); the GMM sees the
    mean of its last cfg.loss_window vectors. Non-finite losses raise DivergenceError."""
    raw = per_sample_losses(net, batches, autocast)
    if not bool(torch.isfinite(raw).all()):
        raise DivergenceError('the per-sample losses of net%d (co-divide)' % (net_index + 1), epoch)
    losses = normalize_losses(raw)
    if history is None:
        history = []
    history.append(losses)
    if cfg.loss_window > 1:
        input_loss = torch.stack(list(history)[-cfg.loss_window:]).mean(0)
    else:
        input_loss = losses
    # the float32 mean, then float64 for the GMM: what the reference's tensor became inside sklearn
    input_loss = input_loss.reshape(-1, 1).numpy().astype(np.float64)
    prob, gmm = fit_gmm(input_loss, random_state=cfg.gmm_seed)
    prob = _processes().share(prob, next(net.parameters()).device)
    return Division(net=net_index, prob=prob, pred=prob > cfg.p_threshold, losses=losses, input_loss=input_loss,
                    gmm=gmm)


def co_divide(nets, source, cfg, *, histories=None, epoch=None, autocast=contextlib.nullcontext):
    """Both nets divide (net k source.eval_batches(k)) before either trains; histories: new_histories(), or
    None. Returns [division by net1, division by net2]."""
    return [eval_train(nets[k], source.eval_batches(k), cfg, history=None if histories is None else histories[k],
                       net_index=k, epoch=epoch, autocast=autocast) for k in range(2)]


# ---- Co-training: MixMatch with co-refinement and co-guessing ----------------------------------

def mixmatch_loss(net, cfg, l, randperm, labeled, unlabeled, current, autocast=contextlib.nullcontext):
    """One training step's loss from the labeled (x, x2, targets_x) and unlabeled (u, u2, targets_u) rows (or
    None): MixUp with l and randperm's partners, ONE forward over the mixed batch (BatchNorm statistics
    shared by every row), Lx on the 2B labeled rows, lambda(current) * Lu on the rest (cfg.mix_unlabeled),
    the uniform-prior penalty over all. Returns (loss, Lx, Lu, lambda)."""
    inputs_x, inputs_x2, targets_x = labeled
    batch_size = inputs_x.size(0)  # B; the last batch may be smaller
    if unlabeled is not None:
        inputs_u, inputs_u2, targets_u = unlabeled
        all_inputs = torch.cat([inputs_x, inputs_x2, inputs_u, inputs_u2], dim=0)    # (2B + 2U, ...)
        all_targets = torch.cat([targets_x, targets_x, targets_u, targets_u], dim=0)
    else:
        all_inputs = torch.cat([inputs_x, inputs_x2], dim=0)
        all_targets = torch.cat([targets_x, targets_x], dim=0)
    idx = randperm(all_inputs.size(0), device=all_inputs.device)
    mixed_input, mixed_target = mixmatch(all_inputs, all_targets, l, idx,
                                         None if cfg.mix_unlabeled else batch_size * 2)
    with autocast():
        logits = net(mixed_input)  # ONE forward over the whole mixed batch (shared BN statistics)
    logits = logits.float()
    logits_x = logits[:batch_size * 2]
    lamb = linear_rampup(current, cfg.warm_up, cfg.lambda_u, cfg.rampup_length)
    if cfg.mix_unlabeled and unlabeled is not None:
        Lx, Lu = semi_loss(logits_x, mixed_target[:batch_size * 2], logits[batch_size * 2:],
                           mixed_target[batch_size * 2:])
        loss_u = lamb * Lu
    else:
        Lx = soft_cross_entropy(logits_x, mixed_target[:batch_size * 2])
        Lu = torch.zeros((), device=logits.device)
        loss_u = 0.0
    penalty = uniform_prior_penalty(logits, cfg.num_class)
    return Lx + loss_u + penalty, Lx, Lu, lamb


def train_pass(net, net2, optimizer, labeled_batches, unlabeled_batches, cfg, *, epoch, num_iter, rng=np.random,
               randperm=torch.randperm, autocast=contextlib.nullcontext, on_step=None, check_every=50):
    """One DivideMix training pass of `net`, with `net2` as the fixed peer.

    labeled_batches:   (x, x2, labels, w_x): two augmented views (B, ...), noisy labels (B,) int64,
                       clean probabilities (B,); the pass ends when they end
    unlabeled_batches: an endless iterator of (u, u2) (it restarts like the reference's loader), or
                       None when the unlabeled set is empty: only labeled rows are mixed, Lu = 0
    num_iter:          num_iterations(len(labeled set), B), for the ramp-up only
    rng, randperm:     the Beta draw (numpy, as the reference) and the MixUp permutation(n, device)
    on_step(batch_idx, metrics): metrics are 0-d tensors (the total loss, Lx and Lu).
    Returns the pass's mean Lx, Lu and its last lambda.
    """
    net.train()
    net2.eval()  # fix one network and train the other
    watch = _NonFiniteWatch('training', epoch, check_every)
    sums, steps, lamb = None, 0, 0.0
    for batch_idx, (inputs_x, inputs_x2, labels_x, w_x) in enumerate(labeled_batches):
        batch_size = inputs_x.size(0)
        labels_x = torch.zeros(batch_size, cfg.num_class, device=inputs_x.device).scatter_(1, labels_x.view(-1, 1), 1)
        w_x = w_x.view(-1, 1).float()
        inputs_u, inputs_u2 = next(unlabeled_batches) if unlabeled_batches is not None else (None, None)

        with autocast():
            if inputs_u is not None:
                targets_u = co_guess(net, net2, inputs_u, inputs_u2, cfg.T)          # (U, C)
            targets_x = co_refine(net, inputs_x, inputs_x2, labels_x, w_x, cfg.T)  # (B, C)

        l = sample_mix_lambda(cfg.alpha, rng)
        loss, Lx, Lu, lamb, watched = _processes().train_loss(
            net, cfg, l, randperm, (inputs_x, inputs_x2, targets_x),
            None if inputs_u is None else (inputs_u, inputs_u2, targets_u), epoch + batch_idx / num_iter, autocast)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        watch.update(watched, batch_idx)
        pair = torch.stack([Lx.detach(), Lu.detach()])
        sums = pair if sums is None else sums + pair
        steps += 1
        if on_step is not None:
            on_step(batch_idx, {'loss': watched.detach(), 'Labeled loss': Lx.detach(), 'Unlabeled loss': Lu.detach()})
    watch.check()
    if steps == 0:
        return {'Lx': float('nan'), 'Lu': float('nan'), 'lambda_u': 0.0, 'steps': 0}
    sums = (sums / steps).tolist()
    return {'Lx': sums[0], 'Lu': sums[1], 'lambda_u': lamb, 'steps': steps}


def co_train(nets, optimizers, source, divisions, cfg, *, epoch, rng=np.random, autocast=contextlib.nullcontext,
             progress=None, check_every=50):
    """net1 trains on the division made by net2, then net2 on net1's. A division that labels no sample leaves
    its net untrained this epoch ('skipped<k>'; the reference crashed); one that labels every sample trains
    on labeled rows alone (Lu = 0). Returns {'Lx1', 'Lu1', 'lambda_u', 'Lx2', 'Lu2'} or 'skipped<k>'."""
    record = {}
    for k in range(2):
        peer = 1 - k
        labeled, unlabeled, num_labeled = source.train_batches(divisions[peer])
        if num_labeled == 0:
            record['skipped%d' % (k + 1)] = True
            continue
        num_iter = num_iterations(num_labeled, cfg.batch_size)
        with _passes(progress)('train net%d' % (k + 1), num_iter) as on_step:
            out = train_pass(nets[k], nets[peer], optimizers[k], labeled, unlabeled, cfg, epoch=epoch,
                             num_iter=num_iter, rng=rng, randperm=source.randperm, autocast=autocast,
                             on_step=on_step, check_every=check_every)
        record.update({'Lx%d' % (k + 1): out['Lx'], 'Lu%d' % (k + 1): out['Lu'], 'lambda_u': out['lambda_u']})
    return record


# ---- Test --------------------------------------------------------------------------------------

@torch.no_grad()
def ensemble_accuracy(nets, batches, topk=(1,), autocast=contextlib.nullcontext, epoch=None):
    """Top-k accuracy (%) of the ensemble sum_k nets[k](x) in eval mode (one net: its own) over (inputs,
    targets) batches. Non-finite outputs (a divergence no loss showed) raise DivergenceError."""
    for net in nets:
        net.eval()
    maxk = max(topk)
    device = next(nets[0].parameters()).device
    correct = torch.zeros(len(topk), dtype=torch.long, device=device)
    total = 0
    finite = True
    for inputs, targets in batches:
        with autocast():
            outputs = sum(net(inputs).float() for net in nets)
        finite = torch.isfinite(outputs).all() & finite  # one sync at the end, not one per batch
        k = min(maxk, outputs.size(1))
        _, pred = outputs.topk(k, dim=1)
        hit = pred.eq(targets.view(-1, 1))
        counts = torch.stack([hit[:, :min(t, k)].any(dim=1).sum() for t in topk])
        correct = correct + counts
        total += targets.size(0)
    correct, total, finite = _processes().test_counts(correct, total, finite, device)
    if not total:
        return [float('nan')] * len(topk)
    if not bool(finite):
        raise DivergenceError('the outputs of %s on a test split' % ('both nets' if len(nets) > 1 else 'the net'),
                              epoch)
    return [100.0 * c / total for c in correct.tolist()]


# ---- One process, or several: the seam ---------------------------------------------------------

class OneProcess(object):
    """Where the steps above change when several processes share every batch; here, one process.
    dividemix_run.distributed.ManyProcesses computes the same numbers on a global batch split over
    torchrun's processes, plugged in with use_processes(); nothing else in this file knows of processes."""

    def warmup_loss(self, outputs, labels, conf_penalty):
        """(the batch's mean CE for the record, the loss to backpropagate)."""
        loss = F.cross_entropy(outputs, labels)
        return loss, (loss + neg_entropy(outputs) if conf_penalty else loss)

    def train_loss(self, net, cfg, l, randperm, labeled, unlabeled, current, autocast):
        """(loss to backpropagate, Lx, Lu, lambda, loss to watch) of one training step: mixmatch_loss."""
        loss, Lx, Lu, lamb = mixmatch_loss(net, cfg, l, randperm, labeled, unlabeled, current, autocast)
        return loss, Lx, Lu, lamb, loss

    def losses_at(self, indices, losses, device):
        """(index, loss) of every sample evaluated, from the passes' lists of them."""
        if not losses:
            return torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, device=device)
        return torch.cat(indices), torch.cat(losses)

    def share(self, prob, device):
        """The GMM posteriors every process trains on."""
        return prob

    def test_counts(self, correct, total, finite, device):
        """(top-k hits, samples, all outputs finite) over the whole test split."""
        return correct, total, finite


_PROCESSES = [OneProcess()]


def use_processes(processes):
    """The seam: OneProcess() (the default), or dividemix_run.distributed.ManyProcesses() under torchrun."""
    _PROCESSES[0] = processes


def _processes():
    return _PROCESSES[0]
