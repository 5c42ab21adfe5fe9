"""The paper's per-run settings and published results (DivideMix, ICLR 2020, Sec. 4 and appendix).

SETTINGS[(dataset, noise_mode, r)] = (lambda_u, p_threshold). The CIFAR 80% cells were
not confirmed against the appendix text; they are the best available reading.
RESULTS[(dataset, noise_mode, r)] = (best, last) test accuracy in %.
"""

SETTINGS = {
    ('cifar10', 'sym', 0.2): (0, 0.5),
    ('cifar10', 'sym', 0.5): (25, 0.5),
    ('cifar10', 'sym', 0.8): (25, 0.5),
    ('cifar10', 'sym', 0.9): (50, 0.6),
    ('cifar10', 'asym', 0.4): (0, 0.5),
    ('cifar100', 'sym', 0.2): (25, 0.5),
    ('cifar100', 'sym', 0.5): (150, 0.5),
    ('cifar100', 'sym', 0.8): (150, 0.5),
    ('cifar100', 'sym', 0.9): (150, 0.6),
}

RESULTS = {
    ('cifar10', 'sym', 0.2): (96.1, 95.7),
    ('cifar10', 'sym', 0.5): (94.6, 94.4),
    ('cifar10', 'sym', 0.8): (93.2, 92.9),
    ('cifar10', 'sym', 0.9): (76.0, 75.4),
    ('cifar10', 'asym', 0.4): (93.4, 92.1),
    ('cifar100', 'sym', 0.2): (77.3, 76.9),
    ('cifar100', 'sym', 0.5): (74.6, 74.2),
    ('cifar100', 'sym', 0.8): (60.2, 59.6),
    ('cifar100', 'sym', 0.9): (31.5, 31.0),
}

# Single-number results of the large-scale runs.
CLOTHING1M_TEST = 74.76
WEBVISION = {'webvision_top1': 77.32, 'webvision_top5': 91.64, 'imagenet_top1': 75.20}

# Datasets without their own row use the row of the paper dataset with as many classes.
TABLE_OF = {'cifar10': 'cifar10', 'cifar100': 'cifar100', 'fashionmnist': 'cifar10'}


def paper_setting(dataset, noise_mode, rate):
    """(lambda_u, p_threshold, where-from) for a run.

    The paper's cell when there is one. Otherwise the nearest cell by noise rate in the
    row of the same noise mode when that row exists (e.g. CIFAR-10 sym 40% -> sym 50%),
    else among all cells of the dataset (the modes the paper did not run: CIFAR-N,
    instance, CIFAR-100 asym, ...); ties go to the higher noise rate. `rate` is r for
    the synthetic modes and the realised noise rate for the CIFAR-N label sets.
    """
    table = TABLE_OF.get(dataset, dataset)
    key = (table, noise_mode, round(rate, 4))
    if key in SETTINGS:
        lam, p = SETTINGS[key]
        src = 'paper setting for %s %s %.0f%%' % (table, noise_mode, 100 * rate)
        if table != dataset:
            src += ' (used for %s)' % dataset
        return lam, p, src
    cells = [k for k in SETTINGS if k[0] == table and k[1] == noise_mode] or [k for k in SETTINGS if k[0] == table]
    best = min(cells, key=lambda k: (abs(k[2] - rate), -k[2]))
    lam, p = SETTINGS[best]
    return lam, p, ('nearest paper setting by noise rate: %s %s %.0f%% (this run: %s %.1f%%)'
                    % (best[0], best[1], 100 * best[2], noise_mode, 100 * rate))
