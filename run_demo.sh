#!/usr/bin/env bash
# The main job in one command: set up (virtual environment, packages, Fashion-MNIST) and run
# DivideMix against a cross-entropy baseline on real images with injected label noise, on the CPU.
# Extra arguments go to demo.py (e.g. --data_path DIR).
set -euo pipefail
cd "$(dirname "$0")"

[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q -r requirements.txt
# for the demo's picture (both runs' test accuracy per epoch); the scripts themselves do not need it
python -m pip install -q matplotlib || echo "note: matplotlib could not be installed; the demo runs without its plot"

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
        ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist) \
            || echo "note: could not install Debian's dataset-fashion-mnist; trying torchvision's download"
    fi
fi
python demo.py --download "$@"
