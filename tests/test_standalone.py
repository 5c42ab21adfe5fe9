"""Files meant to be copied alone import and run from an empty folder holding only that file."""
import json
import os
import shutil
import subprocess
import sys


from conftest import ROOT

SOURCE = {'device_data.py': os.path.join('dividemix_run', 'device_data.py')}  # where a file lives, if not the root
SMOKE = {
    'PreResNet.py': '''
import torch
from PreResNet import ResNet18
out = ResNet18(num_classes=10)(torch.randn(2, 3, 32, 32))
assert out.shape == (2, 10)
print('ok')
''',
    'SmallCNN.py': '''
import torch
from SmallCNN import SmallCNN
assert SmallCNN(num_classes=10)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
print('ok')
''',
    'InceptionResNetV2.py': '''
import torch
from InceptionResNetV2 import InceptionResNetV2
net = InceptionResNetV2(num_classes=7).eval()
with torch.no_grad():
    assert net(torch.randn(1, 3, 299, 299)).shape == (1, 7)
print('ok')
''',
    'dividemix.py': '''
import numpy as np, torch
import dividemix as dm
net, peer = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
lab = [(torch.randn(5, 4), torch.randn(5, 4), torch.randint(0, 3, (5,)), torch.rand(5))]
def unl():
    while True:
        yield torch.randn(5, 4), torch.randn(5, 4)
out = dm.train_pass(net, peer, opt, lab, unl(), dm.Config(num_class=3, warm_up=10), epoch=11, num_iter=2)
assert out['steps'] == 1
prob, gmm = dm.fit_gmm(np.r_[np.zeros(50), np.ones(50)].reshape(-1, 1), random_state=0)
assert ((prob > 0.5) == np.r_[np.ones(50, bool), np.zeros(50, bool)]).all()
print('ok')
''',
    'device_data.py': '''
import numpy as np, torch
from device_data import DeviceImages, stream_seed
imgs = np.random.RandomState(0).randint(0, 256, (20, 32, 32, 3)).astype(np.uint8)
d = DeviceImages(imgs, (0.5,) * 3, (0.25,) * 3, 'cpu')
g = torch.Generator().manual_seed(stream_seed(0))
assert d.augment(torch.arange(8), g).shape == (8, 3, 32, 32)
print('ok')
''',
    'dataloader_cifar.py': '''
import os, pickle, numpy as np
import dataloader_cifar as dl
os.makedirs('cifar', exist_ok=True)
rng = np.random.RandomState(0)
for name in ['data_batch_%d' % i for i in range(1, 6)] + ['test_batch']:
    with open(os.path.join('cifar', name), 'wb') as f:
        pickle.dump({'data': rng.randint(0, 256, (6, 3072)).astype(np.uint8), 'labels': list(rng.randint(0, 10, 6))}, f)
with open('stats.txt', 'w') as log:
    loader = dl.cifar_dataloader('cifar10', 0.5, 'sym', 4, 0, 'cifar', log, noise_file='cifar/0.5_sym.json')
    x, y, idx = next(iter(loader.run('warmup')))
    assert x.shape == (8, 3, 32, 32)
    pred = np.arange(30) % 2 == 0
    labeled, unlabeled = loader.run('train', pred, np.linspace(0, 1, 30))
    assert len(labeled.dataset) == 15
assert open('stats.txt').read().startswith('Numer of labeled samples:15   AUC:')
assert os.path.exists('cifar/0.5_sym.json')
print('ok')
''',
    'dataloader_folder.py': '''
import os
import numpy as np
from PIL import Image
import dataloader_folder as df
for c in ('a', 'b'):
    os.makedirs('root/train/' + c, exist_ok=True)
    for i in range(3):
        Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save('root/train/%s/%d.png' % (c, i))
data = df.scan('root')
assert data.classes == ['a', 'b'] and len(data.splits['train'][0]) == 6 and data.eval_split is None
assert df.load_images(data.splits['train'][0], 16, 3).shape == (6, 16, 16, 3)
loader = df.folder_dataloader(data, 2, 0, lambda im: np.asarray(im, np.float32), lambda im: np.asarray(im, np.float32))
x, y, idx = next(iter(loader.run('eval_train')))
assert x.shape == (2, 20, 24, 3)
print('ok')
''',
    'dataloader_clothing1M.py': '''
import os
from PIL import Image
import dataloader_clothing1M as cl
rows, keys = [], []
for c in range(14):
    os.makedirs('root/%d' % c, exist_ok=True)
    Image.new('RGB', (30, 30), (c * 10, 0, 0)).save('root/%d/a.jpg' % c)
    rows.append('images/%d/a.jpg %d' % (c, c)); keys.append('images/%d/a.jpg' % c)
for name, lines in [('noisy_label_kv.txt', rows), ('clean_label_kv.txt', rows), ('noisy_train_key_list.txt', keys),
                    ('clean_val_key_list.txt', keys[:3]), ('clean_test_key_list.txt', keys[:3])]:
    open('root/' + name, 'w').write('\\n'.join(lines) + '\\n')
loader = cl.clothing_dataloader('root', batch_size=2, num_batches=2, num_workers=0)
x, y, paths = next(iter(loader.run('warmup')))
assert x.shape == (4, 3, 224, 224)
print('ok')
''',
    'dataloader_webvision.py': '''
import os
from PIL import Image
import dataloader_webvision as wv
os.makedirs('root/info', exist_ok=True)
for c in range(2):
    for d in ('root/google', 'root/val_images_256', 'root/imagenet/val/%d' % c):
        os.makedirs(d, exist_ok=True)
    Image.new('RGB', (20, 20)).save('root/google/%d.jpg' % c)
    Image.new('RGB', (20, 20)).save('root/val_images_256/%d.jpg' % c)
    Image.new('RGB', (20, 20)).save('root/imagenet/val/%d/x.JPEG' % c)
open('root/info/train_filelist_google.txt', 'w').write('google/0.jpg 0\\ngoogle/1.jpg 1\\n')
open('root/info/val_filelist.txt', 'w').write('0.jpg 0\\n1.jpg 1\\n')
loader = wv.webvision_dataloader(1, 2, 0, 'root/', None)
x, y, idx = next(iter(loader.run('warmup')))
assert x.shape == (2, 3, 299, 299)
assert len(loader.run('imagenet').dataset) == 2
print('ok')
''',
}


# One process runs every file's smoke script, each from its own folder holding only that file (the
# interpreter starts once: about 20 s less than a process per file). Between files, every module loaded
# from the previous folder is dropped and the folder leaves sys.path, so a file that needs another
# project file cannot find it.
DRIVER = """
import os, sys, traceback
results = {}
for folder in sys.argv[1:]:
    name = os.path.basename(folder)
    os.chdir(folder)
    sys.path.insert(0, folder)
    try:
        exec(compile(open('smoke.py').read(), os.path.join(folder, 'smoke.py'), 'exec'), {'__name__': '__main__'})
        results[name] = 'ok'
    except BaseException:
        results[name] = traceback.format_exc()[-1500:]
    sys.path.remove(folder)
    for mod in [m for m, v in sys.modules.items() if (getattr(v, '__file__', None) or '').startswith(folder)]:
        del sys.modules[mod]
import json
print(json.dumps(results))
"""


def test_files_work_when_copied_alone(tmp_path):
    folders = []
    for filename in sorted(SMOKE):
        folder = tmp_path / filename
        folder.mkdir()
        shutil.copy(os.path.join(ROOT, SOURCE.get(filename, filename)), str(folder / filename))
        (folder / 'smoke.py').write_text(SMOKE[filename])
        folders.append(str(folder))
    (tmp_path / 'driver').mkdir()
    (tmp_path / 'driver' / 'driver.py').write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    # -E -s: no PYTHON* variables, no user site; sys.path holds the smoke's folder and the installed
    # packages, not the project
    done = subprocess.run([sys.executable, '-E', '-s', str(tmp_path / 'driver' / 'driver.py')] + folders,
                          cwd=str(tmp_path / 'driver'), capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(results) == sorted(SMOKE)
    failed = {name: out for name, out in results.items() if out != 'ok'}
    assert not failed, failed
