"""Pretrained weights for torchvision's classification models, with rules that hold offline: from
--pretrained_path, from torch's cache, or downloaded (unless --offline); never a silent switch to
random initialisation (that takes --random_init, explicitly).

    weights = torchvision_weights('resnet50', 'IMAGENET1K_V2')      # the enum member (its metadata too)
    state = load_weights(weights, pretrained_path=None, offline=False)
    model = classifier('resnet50', num_class, state)                # the head replaced for num_class
"""
import os
import socket

import torch
import torch.nn as nn
import torchvision

from cli import UsageError


def torchvision_weights(arch, name):
    """torchvision's weights enum member `name` ('DEFAULT' too) of model `arch`, or a UsageError listing
    the models or weights there are."""
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise UsageError('--arch %s is not a torchvision classification model; choose e.g. resnet18, resnet50, '
                         'convnext_tiny, efficientnet_b0, vit_b_16 (torchvision.models.list_models() lists them all)'
                         % arch)
    enum = torchvision.models.get_model_weights(arch)
    try:
        return enum[name] if name != 'DEFAULT' else enum.DEFAULT
    except KeyError:
        raise UsageError('--weights %s: %s has the weights %s' % (name, arch, ', '.join(w.name for w in enum))) \
            from None


def load_weights(weights, pretrained_path=None, offline=False, what=None):
    """The state dict of `weights` (a torchvision weights enum member) from pretrained_path, torch's cache,
    or a download; else a UsageError that says how to provide the file."""
    what = what or '%s weights' % weights
    filename = os.path.basename(weights.url)
    cache = os.path.join(torch.hub.get_dir(), 'checkpoints', filename)
    how = ('Provide them with --pretrained_path /path/to/%s, or put that file in torch\'s cache folder %s '
           '(set TORCH_HOME to move the cache), e.g. after downloading %s on a machine with internet. '
           '--random_init trains from scratch instead.' % (filename, os.path.dirname(cache), weights.url))
    path = pretrained_path or cache
    if pretrained_path and not os.path.isfile(path):
        raise UsageError('--pretrained_path %s does not exist. %s' % (path, how))
    if not os.path.isfile(path):
        if offline:
            raise UsageError('%s are not cached at %s and --offline forbids a download. %s' % (what, cache, how))
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(60)
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            torch.hub.download_url_to_file(weights.url, cache, progress=False)
        except Exception as e:
            raise UsageError('%s are not cached at %s and downloading %s failed (%s). %s'
                             % (what, cache, weights.url, str(e).splitlines()[0][:200], how)) from None
        finally:
            socket.setdefaulttimeout(old)
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise UsageError('cannot read %s from %s (%s). %s' % (what, path, str(e).splitlines()[0][:200], how)) from None
    return state.get('state_dict', state) if isinstance(state, dict) else state


def classifier(arch, num_class, state=None):
    """torchvision model `arch` with `state` loaded (None: random init) and its last Linear layer replaced
    by a fresh one with num_class outputs."""
    model = torchvision.models.get_model(arch, weights=None)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise UsageError('the weights file does not fit torchvision\'s %s (%s); pass weights of '
                             'torchvision.models.%s' % (arch, str(e).splitlines()[0][:200], arch)) from None
    last = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise UsageError('--arch %s has no Linear classifier layer to replace; choose another torchvision model'
                         % arch)
    name, layer = last[-1]
    parent = model.get_submodule(name.rsplit('.', 1)[0]) if '.' in name else model
    setattr(parent, name.rsplit('.', 1)[-1], nn.Linear(layer.in_features, num_class))
    return model
