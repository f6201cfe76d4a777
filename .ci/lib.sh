# Helpers for the CI steps (sourced). uv (from PyPI) makes the throwaway environments fast.
EXTRAS="fastapi,redis,prometheus,otel"
export UV_PYTHON_DOWNLOADS=never  # only the machine's own interpreters (pyenv), never a downloaded one
CI_TMP="${CI_TMP:-$(mktemp -d "${TMPDIR:-/tmp}/wimse-ci.XXXXXX")}"

# uv in a throwaway venv of its own, installed once per run.
uv_bin() {
  if [ ! -x "$CI_TMP/uv/bin/uv" ]; then
    python3 -m venv "$CI_TMP/uv" >&2
    "$CI_TMP/uv/bin/python" -m pip install --quiet --disable-pip-version-check uv >&2
  fi
  echo "$CI_TMP/uv/bin/uv"
}

# The interpreter for a minor version (3.12): pyenv's newest of that series, else one on PATH. Each candidate
# must run and be that version (a pyenv shim for a version not selected is on PATH but fails).
python_for() {
  local version="$1" candidate
  for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".*/bin/python 2>/dev/null | sort -rV) \
                   "$(command -v "python$version" 2>/dev/null)"; do
    if [ -n "$candidate" ] && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$version" ]; then
      echo "$candidate"
      return
    fi
  done
  echo "no working Python $version found (pyenv or PATH)" >&2
  return 1
}
