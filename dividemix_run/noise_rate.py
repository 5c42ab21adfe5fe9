"""--r auto: the fraction of wrong labels, estimated from the two nets' loss mixtures.

At the first co-divide (the end of warm-up) each net's two-component GMM over its per-sample losses
gives every sample w_i, the posterior of the low-loss ("clean") component. The estimate is the mean of
1 - w_i over the training set, averaged over the two nets: the mixture weight of the high-loss
component, which is what the GMM believes the noisy fraction to be. The paper's table is then read at
that rate, as --r reads it (dividemix_run/paper.py).

What it measures is the fraction of labels the warmed-up nets do not fit, not the fraction of wrong
labels as such: hard images with right labels count too, so it reads high. Measured on Fashion-MNIST
(docs/RESULTS.md): up to +0.11 under symmetric noise (the paper-table cell of the true rate every
time), +0.15 to +0.29 under class-dependent noise between look-alike classes (the wrong cell).
"""
import numpy as np


def estimate(divisions):
    """(mean, [net1's, net2's]) fraction of samples in the high-loss component."""
    per_net = [float(1.0 - np.mean(d.prob)) if len(d.prob) else float('nan') for d in divisions]
    return float(np.mean(per_net)), per_net


def describe(epoch, mean, per_net):
    return ('--r auto: at the first co-divide (epoch %d) the loss mixtures put %.1f%% of the training labels in the '
            'high-loss (noisy) component (net1 %.1f%%, net2 %.1f%%)' % (epoch, 100 * mean, 100 * per_net[0],
                                                                        100 * per_net[1]))
