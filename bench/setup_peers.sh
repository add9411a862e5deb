#!/usr/bin/env bash
# Bench-only environments for the peer libraries of bench/bench_quality.py (never the runtime .venv):
#   $PEER_VENVS/peers   implicit (CPU) + pyarrow/pandas for the Parquet exchange
#   $PEER_VENVS/cornac  cornac 3 (BPR, BiVAE), optional: a failed install is reported, not fatal
# Usage: bash bench/setup_peers.sh [--skip-cornac]    (PEER_VENVS defaults to /work/venvs)
set -euo pipefail

PYTHON="${PYTHON:-python3}"
PEER_VENVS="${PEER_VENVS:-/work/venvs}"
IMPLICIT_VERSION="0.7.3"
CORNAC_VERSION="3.0.1"
TORCH_VERSION="2.13.0"

make_venv() {  # make_venv DIR: a fresh venv with an up-to-date pip
  "$PYTHON" -m venv "$1"
  "$1/bin/pip" install --quiet --upgrade pip
}

mkdir -p "$PEER_VENVS"
if [[ ! -x "$PEER_VENVS/peers/bin/python" ]]; then
  make_venv "$PEER_VENVS/peers"
fi
# implicit 0.7.x builds against numpy 1.x or 2.x; let pip pick the numpy its wheel declares.
"$PEER_VENVS/peers/bin/pip" install --quiet "implicit==$IMPLICIT_VERSION" pyarrow pandas
"$PEER_VENVS/peers/bin/python" -c "import implicit, numpy; print('implicit', implicit.__version__, 'numpy', numpy.__version__)"

if [[ "${1:-}" == "--skip-cornac" ]]; then
  echo "cornac: skipped (--skip-cornac)"
  exit 0
fi
if [[ ! -x "$PEER_VENVS/cornac/bin/python" ]]; then
  make_venv "$PEER_VENVS/cornac"
fi
# cornac's BiVAE needs torch (the runtime's version; a CPU wheel where the machine provides one).
# timeout: a source build that does not finish is reported, not waited on.
if timeout 900 "$PEER_VENVS/cornac/bin/pip" install --quiet "torch==$TORCH_VERSION" \
    && timeout 900 "$PEER_VENVS/cornac/bin/pip" install --quiet "cornac==$CORNAC_VERSION" pyarrow pandas; then
  "$PEER_VENVS/cornac/bin/python" -c "import cornac, torch; print('cornac', cornac.__version__, 'torch', torch.__version__)"
else
  echo "cornac: install failed; bench_quality.py skips the cornac rows" >&2
fi
