"""Pretrained weights for torchvision's classification models, with rules that hold offline: from
--pretrained_path, from torch's cache, or downloaded (unless --offline); never a silent switch to
random initialisation (that takes --random_init, explicitly).

    weights = torchvision_weights('resnet50', 'IMAGENET1K_V2')      # the enum member (its metadata too)
    state = load_weights(weights, pretrained_path=None, offline=False)
    model = classifier('resnet50', num_class, state)                # the head replaced for num_class
    one_image_ok = probe('resnet50', num_class, image_size=224)     # before anything runs: does it train at that size?

Every torchvision classification model trains here but squeezenet (it has no Linear head to replace):
googlenet and inception_v3 without their auxiliary heads (their training-mode outputs would be tuples),
vit_* at their weights' image size (any multiple of the patch size with --random_init), and each model
only at input sizes its layers accept, which probe() finds out up front on the meta device.
"""
import os
import socket

import torch
import torch.nn as nn
import torchvision

from .cli import UsageError


UNSUPPORTED = {'squeezenet1_0': 'it has no Linear classifier layer to replace (its head is a convolution)',
               'squeezenet1_1': 'it has no Linear classifier layer to replace (its head is a convolution)'}


FAMILIES = ('alexnet', 'convnext', 'densenet', 'efficientnet', 'googlenet', 'inception', 'maxvit', 'mnasnet',
            'mobilenet', 'regnet', 'resnet', 'resnext', 'shufflenet', 'swin', 'vgg', 'vit', 'wide_resnet')


def family(arch):
    """resnet50 -> resnet, efficientnet_b0 -> efficientnet; a name outside FAMILIES stands for itself."""
    for f in FAMILIES:
        if arch == f or arch.startswith(f + '_') or (arch.startswith(f) and arch[len(f):len(f) + 1].isdigit()):
            return f
    return arch


def families():
    """The torchvision model families that train here."""
    return sorted({family(a) for a in torchvision.models.list_models(module=torchvision.models)
                   if a not in UNSUPPORTED})


def check_arch(arch):
    """UsageError unless arch is a torchvision classification model that trains here, naming the families
    that do."""
    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known or arch in UNSUPPORTED:
        raise UsageError('--arch %s %s. Families that train here: %s (torchvision.models.list_models() lists every '
                         'name; for small images, preresnet18 or cnn)'
                         % (arch, 'is not a torchvision classification model' if arch not in known else
                            'cannot be trained here: ' + UNSUPPORTED[arch], ', '.join(families())))


def torchvision_weights(arch, name):
    """torchvision's weights enum member `name` ('DEFAULT' too) of model `arch`, or a UsageError listing
    the models or weights there are."""
    check_arch(arch)
    enum = torchvision.models.get_model_weights(arch)
    try:
        return enum[name] if name != 'DEFAULT' else enum.DEFAULT
    except KeyError:
        raise UsageError('--weights %s: %s has the weights %s' % (name, arch, ', '.join(w.name for w in enum))) \
            from None


def load_weights(weights, pretrained_path=None, offline=False, what=None, download=True):
    """The state dict of `weights` (a torchvision weights enum member) from pretrained_path, torch's cache,
    or a download; else a UsageError that says how to provide the file. download=False (--dry_run): None
    where a download would be needed (weights_note says so)."""
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
        if not download:
            return None
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


def weights_note(weights, state, what=None):
    """--dry_run's line on pretrained weights that load_weights(download=False) left to a download."""
    if state is not None:
        return None
    return ('%s are not cached: the run downloads them from %s into %s' % (
        what or '%s weights' % weights, weights.url, os.path.join(torch.hub.get_dir(), 'checkpoints')))


AUX = {'googlenet': ('aux1', 'aux2'), 'inception_v3': ('AuxLogits',)}


def classifier(arch, num_class, state=None, image_size=None):
    """torchvision model `arch` with `state` loaded (None: random init) and its last Linear layer replaced
    by a fresh one with num_class outputs. googlenet and inception_v3 lose their auxiliary heads (the
    algorithm takes one logits tensor; torchvision's own fine-tuning drops them too); with weights they
    keep transform_input, which the ImageNet weights were trained with. image_size: a vit_* without
    weights is built for it (with weights, the weights' size is the only one)."""
    kwargs = {}
    if arch in AUX:
        kwargs = dict(aux_logits=state is not None, transform_input=state is not None,
                      init_weights=state is None)
    elif arch.startswith('vit_') and state is None and image_size:
        kwargs = dict(image_size=image_size)
    model = torchvision.models.get_model(arch, weights=None, **kwargs)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise UsageError('the weights file does not fit torchvision\'s %s (%s); pass weights of '
                             'torchvision.models.%s' % (arch, str(e).splitlines()[0][:200], arch)) from None
    if arch in AUX:
        model.aux_logits = False
        for name in AUX[arch]:
            setattr(model, name, None)
    last = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise UsageError('--arch %s has no Linear classifier layer to replace; choose another torchvision model'
                         % arch)
    name, layer = last[-1]
    parent = model.get_submodule(name.rsplit('.', 1)[0]) if '.' in name else model
    setattr(parent, name.rsplit('.', 1)[-1], nn.Linear(layer.in_features, num_class))
    return model


def probe(arch, num_class, image_size, channels=3, pretrained=True):
    """Build `arch` as the run will (on the meta device: no memory, no time; on the CPU first where a
    constructor reads values) and run a training-mode forward of two images of image_size px. A UsageError
    names what fails (a size the layers do not accept, an output that is no (N, num_class) tensor) and
    what to do. Returns whether the network also trains on a batch of ONE image: BatchNorm needs more
    than one value per channel, so small inputs whose last feature map is 1x1 cannot (the run then skips
    training batches of one image)."""
    def build():
        return classifier(arch, num_class, image_size=None if pretrained else image_size)
    try:
        with torch.device('meta'):
            model = build()
    except Exception:  # a constructor that reads tensor values (regnet's): build for real, then move
        model = build().to('meta')
    model.train()
    try:
        out = model(torch.empty(2, channels, image_size, image_size, device='meta'))
    except Exception as e:
        raise UsageError('--arch %s cannot train on %d-px images (%s): pass another --image_size (224 is what '
                         'torchvision\'s ImageNet weights were trained at%s), or choose another --arch'
                         % (arch, image_size, str(e).splitlines()[0][:200],
                            '; a vit_* with its weights takes only their size' if arch.startswith('vit_') else '')) \
            from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_class):
        raise UsageError('--arch %s returns %s in training mode, not one (batch, %d) logits tensor: choose another '
                         '--arch' % (arch, type(out).__name__, num_class))
    try:
        model(torch.empty(1, channels, image_size, image_size, device='meta'))
        return True
    except ValueError:  # 'Expected more than 1 value per channel when training'
        return False
