#!/usr/bin/env bash
# Create or reuse the project's virtualenv with the pinned stack from
# requirements/stack.txt, mmcv 2.1.0 compiled with its C++ ops included.
#
#   VENV=.venv bash tools/setup_env.sh      (what `make test` / `make demo` call)
#
# Idempotent: a stamp in the venv records the hash of the stack file and
# setup.py, and a venv whose stamp matches and whose imports work is reused
# in a few seconds. The mmcv build (6-16 minutes on 2 cores) is skipped when
# `import mmcv.ops` already works, e.g. a GPU user's own torch + mmcv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STACK="$ROOT/requirements/stack.txt"
SETUPTOOLS_PIN="$(grep -E '^setuptools' "$STACK" | sed 's/[[:space:]]*#.*//')"
pin() { grep -E "^$1==" "$STACK" | sed 's/[[:space:]]*#.*//'; }

say() { printf '[setup_env %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

STAMP="$VENV/.vkd-mmdet-stack"
WANT="$(cat "$STACK" "$ROOT/setup.py" | sha256sum | cut -c1-16)"

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

check_stack() {
  "$PY" - <<'PY'
import importlib, sys
try:
    import mmcv.ops  # noqa: F401  (compiled ops present)
    import mmdet, mmengine, mmpretrain, pkg_resources  # noqa: F401
    import vkd_mmdet  # noqa: F401
except Exception as exc:  # noqa: BLE001
    print(f'  stack check failed: {type(exc).__name__}: {exc}')
    sys.exit(1)
PY
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && check_stack >/dev/null 2>&1; then
  say "environment $VENV is up to date (stack $WANT)"
  exit 0
fi

say "installing build tools: wheel ninja '$SETUPTOOLS_PIN'"
"${PIP[@]}" install -q --upgrade pip wheel ninja "$SETUPTOOLS_PIN"

if "$PY" -c 'import torch' 2>/dev/null; then
  say "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed; keeping it"
else
  say "installing $(pin torch) (CPU build)"
  "${PIP[@]}" install -q "$(pin torch)"
fi

if "$PY" -c 'import mmcv.ops' 2>/dev/null; then
  say "mmcv $("$PY" -c 'import mmcv; print(mmcv.__version__)') with compiled ops already works; skipping the build"
else
  say "building $(pin mmcv) from source with its C++ ops (6-16 minutes on 2 cores; pip caches the wheel)"
  "${PIP[@]}" uninstall -q -y mmcv mmcv-lite 2>/dev/null || true
  # -g0: Python's build flags carry -g; debug info for ~80 torch-heavy C++ files
  # costs much compile time and a huge .so, and nobody debugs mmcv's CPU ops here.
  CFLAGS="${CFLAGS:-} -g0" MMCV_WITH_OPS=1 "${PIP[@]}" install --no-build-isolation "$(pin mmcv)"
fi

say "installing vkd_mmdet (editable) with mmengine, mmdet, mmpretrain, pytest"
"${PIP[@]}" install -q --no-build-isolation -e "$ROOT[tests]"

# Later installs can silently upgrade setuptools past 81 (no pkg_resources).
say "re-asserting $SETUPTOOLS_PIN"
"${PIP[@]}" install -q "$SETUPTOOLS_PIN"

say "checking the stack"
if ! check_stack; then
  say "ERROR: the environment in $VENV does not import the stack; see the message above"
  exit 1
fi
"$PY" -c 'import torch, mmcv, mmdet, mmengine; print(f"  torch {torch.__version__}, mmcv {mmcv.__version__} (ops), mmengine {mmengine.__version__}, mmdet {mmdet.__version__}")'
echo "$WANT" > "$STAMP"
say "done: $VENV"
