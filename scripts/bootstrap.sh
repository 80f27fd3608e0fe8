#!/usr/bin/env bash
# Create or reuse .venv with polx and its four plugins; --dev adds the test tools.
# Idempotent: a second run with unchanged requirements does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=""
[ "${1:-}" = "--dev" ] && dev="-dev"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($py --version)"
  "$py" -m venv .venv
fi
hash=$(cat constraints.txt pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -c1-16)
stamp=".venv/.polx-bootstrap-$hash$dev"
if [ -f "$stamp" ] || [ -f ".venv/.polx-bootstrap-$hash-dev" ]; then
  exit 0  # up to date (a --dev install also satisfies a plain one)
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt)
# torch first and pinned: an unpinned resolution pulls a newer build and several GB of CUDA wheels.
echo "bootstrap: installing torch (pinned in constraints.txt)"
"${pip[@]}" torch torchvision
echo "bootstrap: installing polx and its plugins"
extras=""
[ -n "$dev" ] && extras="[test,onnx,ray]"  # the tests run policy.onnx through onnxruntime, rollouts on a local Ray
"${pip[@]}" -e ".$extras" -e plugins/imf_attnres -e plugins/ddpm_transformer -e plugins/loggers -e plugins/envs
rm -f .venv/.polx-bootstrap-*
touch "$stamp"
echo "bootstrap: ready (.venv/bin/polx)"
