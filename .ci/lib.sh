# Helpers for the CI steps (sourced). uv (from PyPI) makes the throwaway environments fast.
EXTRAS="fastapi,redis,prometheus,otel"
CI_TMP="${CI_TMP:-$(mktemp -d "${TMPDIR:-/tmp}/wimse-ci.XXXXXX")}"

# uv in a throwaway venv of its own, installed once per run.
uv_bin() {
  if [ ! -x "$CI_TMP/uv/bin/uv" ]; then
    python3 -m venv "$CI_TMP/uv" >&2
    "$CI_TMP/uv/bin/python" -m pip install --quiet --disable-pip-version-check uv >&2
  fi
  echo "$CI_TMP/uv/bin/uv"
}

# The interpreter for a minor version (3.12): on PATH, else pyenv's newest of that series.
python_for() {
  local version="$1" found
  if command -v "python$version" >/dev/null 2>&1; then command -v "python$version"; return; fi
  found="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".*/bin/python 2>/dev/null | sort -V | tail -1)"
  if [ -n "$found" ]; then echo "$found"; return; fi
  echo "no Python $version found (PATH or pyenv)" >&2
  return 1
}
