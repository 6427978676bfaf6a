#!/usr/bin/env bash
# Create or reuse the project's virtualenv with the pinned stack from
# requirements/stack.txt: PyPI's torch and torchvision (mmpretrain's models need
# torchvision, whose ops load only beside PyPI's torch), mmcv 2.1.0 compiled with
# its C++ ops for that torch, mmengine, mmdet, mmpretrain and the plugin.
#
#   VENV=.venv bash tools/setup_env.sh      (what `make test` / `make demo` call)
#
# Idempotent: a stamp in the venv records the hash of the stack file and
# setup.py, and a venv whose stamp matches and whose imports work is reused
# in a few seconds. A torch with a working torchvision is kept (a GPU user's own
# builds); mmcv is rebuilt only when `import mmcv.ops` fails with that torch. The
# mmcv build (6-16 minutes on 2 cores) is cached per torch version under
# $VKD_WHEEL_CACHE (default ~/.cache/vkd-mmdet/wheels): pip's own wheel cache
# does not know which torch a wheel was compiled against.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STACK="$ROOT/requirements/stack.txt"
SETUPTOOLS_PIN="$(grep -E '^setuptools' "$STACK" | sed 's/[[:space:]]*#.*//')"
pin() { grep -E "^$1===?[^=]" "$STACK" | sed 's/[[:space:]]*#.*//'; }

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
    import mmdet, mmengine, pkg_resources  # noqa: F401
    import mmpretrain.models  # noqa: F401  (imports torchvision)
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

torch_works() { "$PY" -c 'import torch, torchvision.ops' 2>/dev/null; }
if torch_works; then
  say "torch $("$PY" -c 'import torch; print(torch.__version__)') with torchvision already installed; keeping them"
else
  if "$PY" -c 'import torch' 2>/dev/null; then
    # e.g. the CPU-only torch 2.13 of earlier versions of this stack, beside which
    # PyPI's torchvision cannot load its ops
    say "torch $("$PY" -c 'import torch; print(torch.__version__)') has no working torchvision; replacing it"
  fi
  say "installing $(pin torch) $(pin torchvision) (PyPI's builds with the CUDA runtime packages, several GB; they run on a CPU too)"
  "${PIP[@]}" install -q "$(pin torch)" "$(pin torchvision)"
fi

if "$PY" -c 'import mmcv.ops' 2>/dev/null; then
  say "mmcv $("$PY" -c 'import mmcv; print(mmcv.__version__)') with compiled ops already works; skipping the build"
else
  TORCH_TAG="$("$PY" -c 'import sys, torch; print(f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}")')"
  WHEELS="${VKD_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vkd-mmdet/wheels}/$TORCH_TAG"
  MMCV="$(pin mmcv)"
  if ! ls "$WHEELS"/mmcv-"${MMCV#mmcv==}"-*.whl >/dev/null 2>&1; then
    say "building $MMCV from source with its C++ ops for $TORCH_TAG (6-16 minutes on 2 cores; cached in $WHEELS)"
    # -g0: Python's build flags carry -g; debug info for ~80 torch-heavy C++ files
    # costs much compile time and a huge .so, and nobody debugs mmcv's CPU ops here.
    # --no-cache-dir: pip's wheel cache would hand back a wheel built for another torch.
    CFLAGS="${CFLAGS:-} -g0" MMCV_WITH_OPS=1 "${PIP[@]}" wheel -q --no-build-isolation --no-deps \
      --no-cache-dir -w "$WHEELS.partial" "$MMCV"
    mkdir -p "$WHEELS" && mv "$WHEELS.partial"/mmcv-*.whl "$WHEELS"/ && rm -rf "$WHEELS.partial"
  else
    say "using the $MMCV wheel built earlier for $TORCH_TAG ($WHEELS)"
  fi
  "${PIP[@]}" uninstall -q -y mmcv mmcv-lite 2>/dev/null || true
  "${PIP[@]}" install -q --find-links "$WHEELS" "$MMCV"
  if ! "$PY" -c 'import mmcv.ops' 2>/dev/null; then
    say "ERROR: $MMCV from $WHEELS does not load its ops with this torch:"
    "$PY" -c 'import mmcv.ops' || true
    say "delete $WHEELS to rebuild it"
    exit 1
  fi
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
