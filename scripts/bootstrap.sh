#!/usr/bin/env bash
# Create .venv with everything seppo-video needs, on a fresh machine (Python 3.10+).
#   bash scripts/bootstrap.sh          the package (train, sample, export, eval)
#   bash scripts/bootstrap.sh --test   plus the test tools, Gradio, matplotlib (study plots) and Debian's Chromium
# torch is installed first and pinned to a CPU-capable wheel when none is present, so that no
# dependency pulls a multi-GB CUDA build as a side effect. Re-running is cheap (a no-op when done).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
if [[ "${1:-}" == "--test" ]]; then extras="[test,viewer,study]"; fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
py=.venv/bin/python
stamp=".venv/.seppo-bootstrap${extras}"
if [[ -f "$stamp" && "$stamp" -nt pyproject.toml ]]; then
  exit 0
fi
$py -m pip install --quiet --upgrade pip
if ! $py -c "import torch" 2>/dev/null; then
  $py -m pip install --quiet "torch==${SEPPO_TORCH_VERSION:-2.13.0}"
fi
$py -m pip install --quiet -e ".${extras}"
if [[ -n "$extras" ]] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "note: Chromium not found; the browser test of the viewer will be skipped" >&2
  fi
fi
touch "$stamp"
