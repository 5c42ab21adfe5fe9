"""DivideMix (Li, Socher, Hoi, "DivideMix: Learning with Noisy Labels as Semi-supervised
Learning", ICLR 2020): the algorithm, once.

Stand-alone: imports only torch, numpy and scikit-learn; no argparse, no globals, no
printing, so it can be copied into other code as is. Everything takes the networks,
optimizers and batches as arguments (batches are tensors already on the device, from
any source: a DataLoader, or a device-resident pipeline).

Names follow the paper: T (sharpening temperature), alpha (Beta parameter of MixUp),
lambda_u (weight of the unlabeled loss), p_threshold (clean-probability threshold),
w_x (clean probability of a labeled sample, used to refine its label).

One DivideMix epoch (after warm-up), for two networks net1, net2:
    prob1 = eval_train(net1); prob2 = eval_train(net2)        # per-sample loss -> GMM
    pred1 = prob1 > p_threshold; pred2 = prob2 > p_threshold  # both divisions first
    train_epoch(net1, net2, labeled=pred2, unlabeled=~pred2)  # co-divide: each net
    train_epoch(net2, net1, labeled=pred1, unlabeled=~pred1)  # trains on the other's split
    test: argmax(net1(x) + net2(x))

Everything marked "kept quirk" reproduces the reference on purpose: results depend on it.
"""
import contextlib
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture


class DivergenceError(RuntimeError):
    """A training loss became NaN or infinite."""

    def __init__(self, phase, epoch, iteration):
        self.phase, self.epoch, self.iteration = phase, epoch, iteration
        super().__init__('non-finite loss (NaN or inf) in %s at epoch %d, iteration %d'
                         % (phase, epoch, iteration))


# ----------------------------------------------------------------------------------
# Small pieces
# ----------------------------------------------------------------------------------

def sharpen(p, T):
    """Temperature sharpening: p^(1/T) / sum_c p^(1/T). p: (B, C) probabilities."""
    pt = p ** (1 / T)
    return pt / pt.sum(dim=1, keepdim=True)


def linear_rampup(current, warm_up, lambda_u, rampup_length=16):
    """lambda_u * clip((current - warm_up) / rampup_length, 0, 1), current = epoch + batch_idx / num_iter."""
    return lambda_u * float(np.clip((current - warm_up) / rampup_length, 0.0, 1.0))


def neg_entropy(logits):
    """Confidence penalty: mean_i sum_c p_ic log p_ic (negative entropy), added to the
    warm-up loss for asymmetric noise so the nets do not become over-confident."""
    probs = torch.softmax(logits, dim=1)
    return torch.mean(torch.sum(probs.log() * probs, dim=1))


def uniform_prior_penalty(logits, num_class):
    """sum_c pi_c log(pi_c / mean_i p_ic) with a uniform prior pi: keeps the mean
    prediction over the (mixed) batch from collapsing onto few classes."""
    prior = torch.ones(num_class, device=logits.device) / num_class
    pred_mean = torch.softmax(logits.float(), dim=1).mean(0)
    return torch.sum(prior * torch.log(prior / pred_mean))


def soft_cross_entropy(logits, targets):
    """-mean_i sum_c log_softmax(logits)_ic * targets_ic, for soft (mixed) targets."""
    return -torch.mean(torch.sum(F.log_softmax(logits.float(), dim=1) * targets, dim=1))


def semi_loss(logits_x, targets_x, logits_u, targets_u):
    """Lx = soft cross-entropy on the labeled rows;
    Lu = mean((softmax(logits_u) - targets_u)^2) (squared error, over all entries)."""
    Lx = soft_cross_entropy(logits_x, targets_x)
    Lu = torch.mean((torch.softmax(logits_u.float(), dim=1) - targets_u) ** 2)
    return Lx, Lu


def sample_mix_lambda(alpha, rng=np.random):
    """MixUp coefficient l ~ Beta(alpha, alpha), l = max(l, 1 - l) so the mix stays closer
    to its first input (which keeps the labeled/unlabeled roles of the rows)."""
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
    """MixUp of the batch with a permutation of itself:
    mixed = l * x + (1 - l) * x[idx], for rows [:num_mixed] (all rows when None).
    With num_mixed = 2B only the labeled rows are mixed, but their partners x[idx]
    come from the whole batch (the Clothing1M/WebVision variant)."""
    n = all_inputs.size(0) if num_mixed is None else num_mixed
    mixed_input = l * all_inputs[:n] + (1 - l) * all_inputs[idx][:n]
    mixed_target = l * all_targets[:n] + (1 - l) * all_targets[idx][:n]
    return mixed_input, mixed_target


class _NonFiniteWatch(object):
    """Remembers the first iteration with a non-finite loss without a device sync per step;
    check() syncs (every `every` steps and at the end of a pass) and raises DivergenceError."""

    def __init__(self, phase, epoch, device, every):
        self.phase, self.epoch, self.every = phase, epoch, max(1, every)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def update(self, loss, batch_idx):
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, batch_idx), self.first_bad)
        if (batch_idx + 1) % self.every == 0:
            self.check()

    def check(self):
        first = int(self.first_bad.item())
        if first >= 0:
            raise DivergenceError(self.phase, self.epoch, first + 1)


# ----------------------------------------------------------------------------------
# Training passes
# ----------------------------------------------------------------------------------

def warmup_epoch(net, optimizer, batches, epoch=0, conf_penalty=False, autocast=contextlib.nullcontext,
                 on_step=None, check_every=50):
    """Warm-up: plain cross-entropy on the noisy labels (+ negative-entropy confidence
    penalty when conf_penalty). batches: iterable of (inputs, labels, index).
    on_step(batch_idx, metrics) with metrics a dict of 0-d tensors, for progress display.
    Returns {'loss': mean CE, 'steps': n}."""
    net.train()
    watch = None
    total, steps = None, 0
    for batch_idx, (inputs, labels, _) in enumerate(batches):
        optimizer.zero_grad()
        with autocast():
            outputs = net(inputs)
        loss = F.cross_entropy(outputs.float(), labels)
        L = loss + neg_entropy(outputs.float()) if conf_penalty else loss
        L.backward()
        optimizer.step()
        if watch is None:
            watch = _NonFiniteWatch('warm-up', epoch, L.device, check_every)
        watch.update(L, batch_idx)
        total = loss.detach() if total is None else total + loss.detach()
        steps += 1
        if on_step is not None:
            on_step(batch_idx, {'CE-loss': loss.detach()})
    if watch is not None:
        watch.check()
    return {'loss': float(total) / steps if steps else float('nan'), 'steps': steps}


def train_epoch(net, net2, optimizer, labeled_batches, unlabeled_batches, epoch, warm_up, num_iter, num_class,
                T=0.5, alpha=4.0, lambda_u=25.0, mix_unlabeled=True, rng=np.random, randperm=torch.randperm,
                autocast=contextlib.nullcontext, on_step=None, check_every=50):
    """One DivideMix training pass of `net`, with `net2` as the fixed peer.

    labeled_batches:   iterable of (x, x2, labels, w_x): two augmented views (B, ...),
                       noisy labels (B,) int64, clean probabilities (B,). The pass ends
                       when it ends.
    unlabeled_batches: iterator of (u, u2) that never runs out (it restarts like the
                       reference's unlabeled loader), or None when the unlabeled set is
                       empty: then only the labeled rows are mixed and Lu = 0.
    num_iter:          len(labeled set) // batch_size + 1, used only by the ramp-up.
    mix_unlabeled:     True (CIFAR): mix all 2B + 2U rows, loss = Lx + lambda * Lu + penalty.
                       False (Clothing1M, WebVision): mix only the 2B labeled rows (partners
                       from the whole batch), loss = Lx + penalty.
    rng:               source of the Beta draw (numpy; the reference used np.random).
    randperm:          randperm(n, device) -> LongTensor, the MixUp partner permutation.
    Returns mean Lx, Lu and the last lambda over the pass.
    """
    net.train()
    net2.eval()  # fix one network and train the other
    watch = None
    sums, steps, lamb = None, 0, 0.0
    for batch_idx, (inputs_x, inputs_x2, labels_x, w_x) in enumerate(labeled_batches):
        batch_size = inputs_x.size(0)
        labels_x = torch.zeros(batch_size, num_class, device=inputs_x.device).scatter_(1, labels_x.view(-1, 1), 1)
        w_x = w_x.view(-1, 1).float()
        inputs_u, inputs_u2 = next(unlabeled_batches) if unlabeled_batches is not None else (None, None)

        with autocast():
            if inputs_u is not None:
                targets_u = co_guess(net, net2, inputs_u, inputs_u2, T)
            targets_x = co_refine(net, inputs_x, inputs_x2, labels_x, w_x, T)

        l = sample_mix_lambda(alpha, rng)
        if inputs_u is not None:
            all_inputs = torch.cat([inputs_x, inputs_x2, inputs_u, inputs_u2], dim=0)
            all_targets = torch.cat([targets_x, targets_x, targets_u, targets_u], dim=0)
        else:
            all_inputs = torch.cat([inputs_x, inputs_x2], dim=0)
            all_targets = torch.cat([targets_x, targets_x], dim=0)
        idx = randperm(all_inputs.size(0), device=all_inputs.device)
        mixed_input, mixed_target = mixmatch(all_inputs, all_targets, l, idx,
                                             None if mix_unlabeled else batch_size * 2)
        with autocast():
            logits = net(mixed_input)  # ONE forward over the whole mixed batch (shared BN statistics)
        logits = logits.float()
        logits_x = logits[:batch_size * 2]
        lamb = linear_rampup(epoch + batch_idx / num_iter, warm_up, lambda_u)
        if mix_unlabeled and inputs_u is not None:
            Lx, Lu = semi_loss(logits_x, mixed_target[:batch_size * 2], logits[batch_size * 2:],
                               mixed_target[batch_size * 2:])
            loss_u = lamb * Lu
        else:
            Lx = soft_cross_entropy(logits_x, mixed_target[:batch_size * 2])
            Lu = torch.zeros((), device=logits.device)
            loss_u = 0.0
        penalty = uniform_prior_penalty(logits, num_class)
        loss = Lx + loss_u + penalty

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        if watch is None:
            watch = _NonFiniteWatch('training', epoch, loss.device, check_every)
        watch.update(loss, batch_idx)
        pair = torch.stack([Lx.detach(), Lu.detach()])
        sums = pair if sums is None else sums + pair
        steps += 1
        if on_step is not None:
            on_step(batch_idx, {'Labeled loss': Lx.detach(), 'Unlabeled loss': Lu.detach()})
    if watch is not None:
        watch.check()
    if steps == 0:
        return {'Lx': float('nan'), 'Lu': float('nan'), 'lambda_u': 0.0, 'steps': 0}
    sums = (sums / steps).tolist()
    return {'Lx': sums[0], 'Lu': sums[1], 'lambda_u': lamb, 'steps': steps}


# ----------------------------------------------------------------------------------
# Co-divide: per-sample losses -> two-component GMM -> clean probability
# ----------------------------------------------------------------------------------

@torch.no_grad()
def per_sample_losses(net, batches, num_samples, autocast=contextlib.nullcontext):
    """Cross-entropy of every training sample against its noisy label, in eval mode,
    placed at the sample's index. batches: iterable of (inputs, labels, index).
    Returns a float32 CPU tensor (num_samples,)."""
    net.eval()
    losses = None
    for inputs, targets, index in batches:
        with autocast():
            outputs = net(inputs)
        loss = F.cross_entropy(outputs.float(), targets, reduction='none')
        if losses is None:
            losses = torch.zeros(num_samples, device=loss.device)
        losses[index.to(loss.device)] = loss  # one vectorised scatter per batch
    return losses.cpu() if losses is not None else torch.zeros(num_samples)


def normalize_losses(losses):
    """Min-max normalise to [0, 1]. A constant vector (no spread to normalise) becomes
    all zeros, where the reference would divide by zero and feed NaN to the GMM."""
    span = losses.max() - losses.min()
    if span <= 0:
        return torch.zeros_like(losses)
    return (losses - losses.min()) / span


def fit_gmm(input_loss, reg_covar=5e-4, random_state=None):
    """Two-component 1-D GMM as the reference fits it (max_iter=10, tol=1e-2).
    input_loss (N, 1). Returns (prob, gmm) with prob the posterior of the component with
    the smaller mean, i.e. the probability that each sample is clean.
    random_state=None reproduces the reference's unseeded GMM.

    Fitted and evaluated in float64, as in the reference: it passed a float32 torch tensor,
    which scikit-learn converts to float64 (a float32 numpy array it would keep in float32,
    and ten EM steps in float32 end measurably elsewhere; README, "Differences")."""
    input_loss = np.asarray(input_loss, dtype=np.float64)
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=reg_covar, random_state=random_state)
    with warnings.catch_warnings():
        # max_iter=10 rarely converges to tol; the reference ran it like this on purpose
        warnings.simplefilter('ignore', ConvergenceWarning)
        gmm.fit(input_loss)
    prob = gmm.predict_proba(input_loss)[:, gmm.means_.argmin()]
    return prob, gmm


def eval_train(net, batches, num_samples, history=None, window=1, reg_covar=5e-4, random_state=None,
               autocast=contextlib.nullcontext):
    """Per-sample losses -> min-max normalise -> (history average) -> GMM.

    history: a list or deque the normalised loss vector is appended to (the caller keeps
    it across epochs); the GMM input is the mean of its last `window` vectors (the
    reference uses window 5 when r == 0.9, else 1). Returns a dict with
    prob (N,) float64 clean probabilities, losses (normalised, float32 tensor),
    input_loss (N, 1) what the GMM saw, gmm the fitted model.
    """
    losses = normalize_losses(per_sample_losses(net, batches, num_samples, autocast))
    if history is None:
        history = []
    history.append(losses)
    if window > 1:
        input_loss = torch.stack(list(history)[-window:]).mean(0)
    else:
        input_loss = losses
    # the float32 mean, then float64 for the GMM: what the reference's tensor became inside sklearn
    input_loss = input_loss.reshape(-1, 1).numpy().astype(np.float64)
    prob, gmm = fit_gmm(input_loss, reg_covar=reg_covar, random_state=random_state)
    return {'prob': prob, 'losses': losses, 'input_loss': input_loss, 'gmm': gmm}


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


# ----------------------------------------------------------------------------------
# Evaluation and schedule
# ----------------------------------------------------------------------------------

@torch.no_grad()
def ensemble_accuracy(nets, batches, topk=(1,), autocast=contextlib.nullcontext):
    """Top-k accuracy (%) of the ensemble prediction sum_k nets[k](x), eval mode.
    batches: iterable of (inputs, targets). One net gives its own accuracy."""
    for net in nets:
        net.eval()
    maxk = max(topk)
    correct = None
    total = 0
    for inputs, targets in batches:
        with autocast():
            outputs = sum(net(inputs).float() for net in nets)
        k = min(maxk, outputs.size(1))
        _, pred = outputs.topk(k, dim=1)
        hit = pred.eq(targets.view(-1, 1))
        counts = torch.stack([hit[:, :min(t, k)].any(dim=1).sum() for t in topk])
        correct = counts if correct is None else correct + counts
        total += targets.size(0)
    if not total:
        return [float('nan')] * len(topk)
    return [100.0 * c / total for c in correct.tolist()]


def learning_rate(epoch, lr, decay_epoch):
    """The step schedule of all three setups: lr until decay_epoch, lr / 10 from then on."""
    return lr / 10 if epoch >= decay_epoch else lr


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group['lr'] = lr


def num_iterations(num_labeled, batch_size):
    """The reference's num_iter = len(labeled) // batch_size + 1 (one more than the number of
    full batches, even when the division is exact: kept quirk, it only scales the ramp-up)."""
    return num_labeled // batch_size + 1

