"""dividemix.py: each piece of the algorithm against hand-computed values."""
import math
from collections import deque

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dividemix as dm
from dividemix_run.run import division_stats
from PreResNet import ResNet18


class Const(nn.Module):
    """A 'network' that returns fixed logits whatever the input (one row per input)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.logits.expand(x.size(0), -1) + 0 * self.dummy


def test_sharpen_values():
    p = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    out = dm.sharpen(p, 0.5)
    assert torch.allclose(out[0], torch.tensor([0.36 / 0.52, 0.16 / 0.52]))
    assert torch.allclose(out[1], torch.tensor([0.5, 0.5]))
    assert torch.allclose(dm.sharpen(p, 1.0), p)
    assert torch.allclose(dm.sharpen(torch.rand(5, 7) + 0.01, 0.3).sum(1), torch.ones(5))


def test_co_refinement_weighting():
    logits = [2.0, 0.0, -1.0]
    net = Const(logits)
    x = torch.zeros(3, 1)
    onehot = F.one_hot(torch.tensor([1, 1, 1]), 3).float()
    px = torch.softmax(torch.tensor(logits), 0)
    w = torch.tensor([[1.0], [0.0], [0.25]])
    out = dm.co_refine(net, x, x, onehot, w, T=0.5)
    assert torch.allclose(out[0], torch.tensor([0.0, 1.0, 0.0]))        # trusted label kept
    assert torch.allclose(out[1], dm.sharpen(px[None], 0.5)[0])          # the net's own guess
    mix = 0.25 * onehot[2] + 0.75 * px
    assert torch.allclose(out[2], dm.sharpen(mix[None], 0.5)[0], atol=1e-6)


def test_co_guessing_averages_both_nets_and_views():
    a, b = Const([1.0, 0.0]), Const([0.0, 3.0])
    u = torch.zeros(2, 1)
    pu = (torch.softmax(torch.tensor([1.0, 0.0]), 0) + torch.softmax(torch.tensor([0.0, 3.0]), 0)) / 2
    assert torch.allclose(dm.co_guess(a, b, u, u, T=0.5), dm.sharpen(pu[None], 0.5).expand(2, -1))


def test_co_guess_keeps_train_mode_batchnorm_quirk():
    """The no-grad forwards of the trained net run in train mode and update its BN running stats."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3))
    peer = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    net.train()
    before = net[2].running_mean.clone()
    dm.co_guess(net, peer, torch.randn(8, 4) + 3, torch.randn(8, 4) + 3, 0.5)
    assert not torch.equal(before, net[2].running_mean)
    assert net[2].num_batches_tracked.item() == 2


def test_mix_lambda_at_least_half():
    rng = np.random.RandomState(0)
    ls = np.array([dm.sample_mix_lambda(4.0, rng) for _ in range(5000)])
    assert (ls >= 0.5).all() and (ls <= 1.0).all()
    # max(l, 1-l) of Beta(4,4) has mean ~0.637; of Beta(0.5, 0.5) ~0.818
    assert abs(ls.mean() - 0.637) < 0.01
    ls = np.array([dm.sample_mix_lambda(0.5, rng) for _ in range(5000)])
    assert abs(ls.mean() - 0.818) < 0.015


def test_mixmatch_rows():
    inputs = torch.arange(8, dtype=torch.float32).view(4, 2)
    targets = torch.eye(4)
    idx = torch.tensor([3, 2, 1, 0])
    mi, mt = dm.mixmatch(inputs, targets, 0.75, idx)
    assert torch.allclose(mi, 0.75 * inputs + 0.25 * inputs[idx])
    assert torch.allclose(mt, 0.75 * targets + 0.25 * targets[idx])
    mi2, mt2 = dm.mixmatch(inputs, targets, 0.75, idx, num_mixed=2)  # Clothing1M/WebVision variant
    assert torch.allclose(mi2, mi[:2]) and mt2.shape == (2, 4)
    assert torch.allclose(mi2[0], 0.75 * inputs[0] + 0.25 * inputs[3])  # partner from the unlabeled part


def test_penalties():
    C = 4
    assert abs(dm.uniform_prior_penalty(torch.zeros(6, C), C).item()) < 1e-7
    logits = torch.tensor([[10.0, 0, 0, 0]] * 3 + [[0, 10.0, 0, 0]])
    pm = torch.softmax(logits, 1).mean(0)
    expected = sum(0.25 * math.log(0.25 / pm[c].item()) for c in range(C))
    assert abs(dm.uniform_prior_penalty(logits, C).item() - expected) < 1e-5
    assert abs(dm.neg_entropy(torch.zeros(5, C)).item() + math.log(C)) < 1e-6
    assert dm.neg_entropy(torch.tensor([[50.0, 0, 0, 0]])).item() > -1e-6


@pytest.mark.parametrize('current, expected', [(5.0, 0.0), (10.0, 0.0), (18.0, 12.5), (26.0, 25.0), (300.0, 25.0),
                                               (10.5, 25.0 * 0.5 / 16)])
def test_rampup(current, expected):
    assert dm.linear_rampup(current, 10, 25.0) == pytest.approx(expected)


def test_semi_loss_values():
    lx = torch.tensor([[1.0, 0.0]])
    tx = torch.tensor([[0.3, 0.7]])
    Lx, Lu = dm.semi_loss(lx, tx, torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    ls = F.log_softmax(lx, 1)[0]
    assert Lx.item() == pytest.approx(-(0.3 * ls[0] + 0.7 * ls[1]).item())
    assert Lu.item() == pytest.approx((0.25 + 0.25 + 0 + 0) / 4)


def test_gmm_split_recovers_bimodal_sample():
    rng = np.random.RandomState(0)
    clean = np.r_[np.ones(800, bool), np.zeros(200, bool)]
    loss = np.where(clean, rng.normal(0.1, 0.05, 1000), rng.normal(0.8, 0.08, 1000)).clip(0, 1)
    prob, gmm = dm.fit_gmm(loss.reshape(-1, 1).astype(np.float32), random_state=0)
    assert ((prob > 0.5) == clean).mean() > 0.99
    assert gmm.means_.min() == pytest.approx(0.1, abs=0.02)
    stats = division_stats(prob, prob > 0.5, clean)
    assert stats['auc'] > 0.999 and stats['precision'] > 0.99 and stats['recall'] > 0.99
    again, _ = dm.fit_gmm(loss.reshape(-1, 1).astype(np.float32), random_state=0)
    assert np.array_equal(prob, again)


def test_gmm_fits_and_predicts_in_float64_as_the_reference():
    """The reference handed sklearn a float32 torch tensor, which sklearn converted to float64 to fit
    (and, in its 2020 versions, to predict). A float32 numpy array would stay float32, and ten EM
    steps in float32 end measurably elsewhere: the fit must see float64."""
    from sklearn.mixture import GaussianMixture
    rng = np.random.RandomState(0)
    n = 20000
    x = np.where(rng.rand(n) < 0.6, rng.gamma(2, 0.05, n), rng.normal(0.7, 0.15, n)).clip(0, None)
    x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32).reshape(-1, 1)
    ref = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=0)
    ref.fit(torch.from_numpy(x))  # the reference's call
    prob, gmm = dm.fit_gmm(x, random_state=0)
    for name in ('means_', 'covariances_', 'weights_'):
        assert np.array_equal(getattr(gmm, name), getattr(ref, name)), name
    expected = ref.predict_proba(x.astype(np.float64))[:, ref.means_.argmin()]
    assert prob.dtype == np.float64 and np.array_equal(prob, expected)


def test_per_sample_losses_land_at_their_indices():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    x = torch.randn(20, 6)
    y = torch.randint(0, 3, (20,))
    order = torch.randperm(20)
    batches = [(x[order[i:i + 7]], y[order[i:i + 7]], order[i:i + 7]) for i in range(0, 20, 7)]
    losses = dm.per_sample_losses(net, batches)
    expected = F.cross_entropy(net(x), y, reduction='none').detach()
    assert torch.allclose(losses, expected, atol=1e-6)


def test_eval_train_normalises_and_averages_history():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x, y = torch.randn(30, 4), torch.randint(0, 2, (30,))
    batches = [(x, y, torch.arange(30))]
    history = deque(maxlen=5)
    old = torch.rand(30)
    history.append(old)
    out = dm.eval_train(net, batches, dm.Config(num_class=2, warm_up=1, loss_window=5, gmm_seed=0), history=history)
    assert out.losses.min() == 0 and out.losses.max() == 1
    assert out.input_loss.dtype == np.float64  # the float32 history mean, widened for the GMM
    assert np.allclose(out.input_loss.reshape(-1), ((old + out.losses) / 2).numpy())
    assert len(history) == 2 and torch.equal(history[-1], out.losses)
    single = dm.eval_train(net, batches, dm.Config(num_class=2, warm_up=1, gmm_seed=0), history=deque([old], maxlen=5))
    assert np.allclose(single.input_loss.reshape(-1), single.losses.numpy())
    assert dm.normalize_losses(torch.full((5,), 2.0)).eq(0).all()  # constant losses: no division by zero


def test_division_stats_by_hand():
    clean = np.array([1, 1, 1, 0, 0], bool)
    prob = np.array([0.9, 0.8, 0.2, 0.7, 0.1])
    s = division_stats(prob, prob > 0.5, clean)
    assert s['labeled'] == 3 and s['precision'] == pytest.approx(2 / 3) and s['recall'] == pytest.approx(2 / 3)
    assert s['auc'] == pytest.approx(5 / 6)
    assert math.isnan(division_stats(prob, prob > 0.5, np.ones(5, bool))['auc'])


def test_ensemble_accuracy_topk():
    a = Const([3.0, 2.0, 0.0, 1.0])
    b = Const([0.0, 2.0, 0.0, 0.0])
    x = torch.zeros(4, 1)
    y = torch.tensor([1, 0, 3, 2])
    top1, top2, top3 = dm.ensemble_accuracy([a, b], [(x, y)], topk=(1, 2, 3))
    assert (top1, top2, top3) == (25.0, 50.0, 75.0)  # sum = [3, 4, 0, 1]: ranking 1, 0, 3, 2
    assert dm.ensemble_accuracy([a], [(x, y)])[0] == 25.0


def test_schedule():
    assert dm.learning_rate(149, 0.02, 150) == 0.02 and dm.learning_rate(150, 0.02, 150) == pytest.approx(0.002)
    assert dm.num_iterations(128, 64) == 3 and dm.num_iterations(100, 64) == 2
    opts = [torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.02) for _ in range(2)]
    dm.set_lr(opts, dm.learning_rate(150, 0.02, 150))
    assert all(g['lr'] == pytest.approx(0.002) for o in opts for g in o.param_groups)


def small_net(C=3):
    torch.manual_seed(0)
    return ResNet18(num_classes=C, width=4)


def batches_of(n, C, seed, size=8, labeled=True):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(size, 3, 32, 32, generator=g)
        if labeled:
            yield x, x + 0.1, torch.randint(0, C, (size,), generator=g), torch.rand(size, generator=g)
        else:
            yield x, x - 0.1


def endless(C, seed):
    while True:
        yield from batches_of(3, C, seed, labeled=False)


@pytest.mark.parametrize('mix_unlabeled', [True, False])
def test_train_epoch_runs_and_updates(mix_unlabeled):
    net, peer = small_net(), small_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    before = [p.detach().clone() for p in net.parameters()]
    cfg = dm.Config(num_class=3, warm_up=10, mix_unlabeled=mix_unlabeled)
    out = dm.train_pass(net, peer, opt, batches_of(3, 3, 1), endless(3, 2), cfg, epoch=12, num_iter=4,
                        rng=np.random.RandomState(0))
    assert out['steps'] == 3 and math.isfinite(out['Lx'])
    assert out['lambda_u'] == pytest.approx(25 * (12 + 2 / 4 - 10) / 16)
    if not mix_unlabeled:
        assert out['Lu'] == 0
    assert all(p.grad is not None for p in net.parameters())
    assert sum(not torch.equal(a, p) for a, p in zip(before, net.parameters())) >= len(before) - 1
    assert not peer.training and net.training


def test_train_epoch_without_unlabeled_set():
    net, peer = small_net(), small_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    out = dm.train_pass(net, peer, opt, batches_of(2, 3, 1), None, dm.Config(num_class=3, warm_up=10), epoch=12,
                        num_iter=3)
    assert out['steps'] == 2 and out['Lu'] == 0 and math.isfinite(out['Lx'])


def test_divergence_names_epoch_and_iteration():
    net, peer = small_net(), small_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    good = list(batches_of(5, 3, 1))
    x, x2, y, w = good[3]
    good[3] = (x * float('nan'), x2, y, w)
    with pytest.raises(dm.DivergenceError, match='epoch 12, iteration 4'):
        dm.train_pass(net, peer, opt, good, endless(3, 2), dm.Config(num_class=3, warm_up=10), epoch=12, num_iter=6)
    wnet = small_net()
    wopt = torch.optim.SGD(wnet.parameters(), lr=0.01)
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,)), torch.arange(4)) for _ in range(3)]
    batches[1] = (batches[1][0] * float('inf'), batches[1][1], batches[1][2])
    with pytest.raises(dm.DivergenceError, match='warm-up at epoch 2, iteration 2'):
        dm.warmup_pass(wnet, wopt, batches, epoch=2)


@pytest.mark.parametrize('penalty', [False, True])
def test_warmup_step_descends_cross_entropy_plus_negative_entropy(penalty):
    """One warm-up step is SGD on CE (+ mean_i sum_c p log p with the confidence penalty), computed
    here by hand; the logged loss is the cross-entropy alone."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    net = nn.Linear(5, 3)
    ref = nn.Linear(5, 3)
    ref.load_state_dict(net.state_dict())
    out = dm.warmup_pass(net, torch.optim.SGD(net.parameters(), lr=0.5), [(x, y, torch.arange(8))],
                         conf_penalty=penalty)
    logits = ref(x)
    p = torch.softmax(logits, 1)
    ce = F.cross_entropy(logits, y)
    (ce + ((p * p.log()).sum(1).mean() if penalty else 0)).backward()
    for got, w in zip(net.parameters(), ref.parameters()):
        assert torch.allclose(got, w - 0.5 * w.grad, atol=1e-6)
    assert out == {'loss': pytest.approx(ce.item()), 'steps': 1}
