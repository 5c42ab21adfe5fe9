"""Model smoke tests (timm style): forward shape, backward, every parameter gets a gradient, no NaN."""
import pytest
import torch

from InceptionResNetV2 import InceptionResNetV2
from PreResNet import ResNet18
from SmallCNN import SmallCNN


def smoke(net, x, num_classes):
    net.train()
    out = net(x)
    assert out.shape == (x.size(0), num_classes)
    assert torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, 'parameters without gradient: %s' % missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    net.eval()
    with torch.no_grad():
        assert torch.isfinite(net(x)).all()


@pytest.mark.parametrize('num_classes, in_channels, side, width', [
    (10, 3, 32, 64),    # the paper's CIFAR-10 net
    (100, 3, 32, 64),   # CIFAR-100
    (10, 1, 28, 8),     # Fashion-MNIST, narrow CPU variant
])
def test_preresnet18(num_classes, in_channels, side, width):
    torch.manual_seed(0)
    net = ResNet18(num_classes=num_classes, in_channels=in_channels, width=width)
    smoke(net, torch.randn(2, in_channels, side, side), num_classes)


@pytest.mark.parametrize('in_channels, side', [(1, 28), (3, 32)])
def test_small_cnn(in_channels, side):
    torch.manual_seed(0)
    net = SmallCNN(num_classes=10, in_channels=in_channels, width=16, image_size=side)
    smoke(net, torch.randn(3, in_channels, side, side), 10)
    net.train()
    assert net(torch.randn(1, in_channels, side, side)).shape == (1, 10)  # a ragged batch of one trains too


def test_preresnet18_reference_layout():
    net = ResNet18(10)
    n_params = sum(p.numel() for p in net.parameters())
    # The post-activation CIFAR ResNet-18 has 11,173,962 parameters. The pre-activation one has no
    # BN in its three projection shortcuts (-2*(128+256+512) = -1,792) and its first block of each
    # stage normalises the narrower input (-(128+256+512) = -896): 11,171,274.
    assert n_params == 11173962 - 1792 - 896
    keys = net.state_dict().keys()
    for k in ('conv1.weight', 'bn1.running_mean', 'layer1.0.bn1.weight', 'layer2.0.shortcut.0.weight',
              'layer4.1.conv2.weight', 'linear.weight'):
        assert k in keys
    assert 'layer1.0.shortcut.0.weight' not in keys  # identity shortcut when the shape is unchanged


def test_inception_resnet_v2_299():
    torch.manual_seed(0)
    net = InceptionResNetV2(num_classes=50)
    assert sum(p.numel() for p in net.parameters()) == 54383314
    smoke(net, torch.randn(2, 3, 299, 299), 50)
    # the standard layout: state-dict names of the widely used port
    keys = net.state_dict().keys()
    for k in ('conv2d_1a.conv.weight', 'mixed_5b.branch3.1.bn.running_var', 'repeat.9.conv2d.bias',
              'repeat_1.19.branch1.2.conv.weight', 'repeat_2.8.conv2d.weight', 'block8.conv2d.weight',
              'conv2d_7b.bn.weight', 'last_linear.weight'):
        assert k in keys
    assert net.conv2d_1a.bn.eps == 0.001 and net.conv2d_1a.conv.bias is None
    assert not hasattr(net.block8, 'relu') and net.repeat[0].scale == 0.17 and net.repeat_1[0].scale == 0.10
