#!/usr/bin/env bash
# Sets up everything samoyed needs on a Debian-like Linux box: system packages (when root),
# a virtual environment and the Python packages. Safe to run again; it installs only what
# is missing.
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}
cd "$(dirname "$0")/.."

# System packages: Icarus Verilog (RTL simulation) and the Fashion-MNIST data set.
need=()
command -v iverilog >/dev/null 2>&1 || need+=(iverilog)
[ -e /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "samoyed setup: apt-get install ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "samoyed setup: please install these system packages: ${need[*]}" >&2
        echo "  (Debian/Ubuntu: sudo apt-get install ${need[*]}); continuing without them." >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "samoyed setup: creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
echo "samoyed setup: installing Python packages (first time: a few minutes)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
