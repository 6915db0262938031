# Sourced by scripts/demo and scripts/test: creates (once) and activates the virtual
# environment they run in. DBTUNE_PYTHON picks the interpreter (default python3, 3.11+);
# DBTUNE_DJANGO pins a Django series (for example 5.2 or 6.1; default the newest allowed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${DBTUNE_PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: '$python' was not found. Set DBTUNE_PYTHON to a Python 3.11+ interpreter." >&2
  exit 2
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: django-dbtune needs Python 3.11 or newer; '$python' is older." >&2
  exit 2
fi
version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
venv="$root/.venv-py$version${DBTUNE_DJANGO:+-django$DBTUNE_DJANGO}"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1) ${DBTUNE_DJANGO:-}"
# One setup at a time: two editable installs of this tree at once (CI's runs side by side)
# read each other's half-written package metadata, and pip fails.
exec 9>"$root/.venv-setup.lock"
flock 9
if [ ! -f "$venv/.installed" ] || [ "$(cat "$venv/.installed")" != "$want" ]; then
  echo "Setting up $(basename "$venv") (Python $version); this takes a minute the first time..." >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e "$root[postgres,redis,toolbar]" --group "$root/pyproject.toml:dev" \
    ${DBTUNE_DJANGO:+"django~=$DBTUNE_DJANGO.0"}
  echo "$want" > "$venv/.installed"
fi
if [ "${DBTUNE_DB:-}" = mariadb ] && ! "$venv/bin/python" -c "import MySQLdb" 2>/dev/null; then
  # mysqlclient is built from source against the MariaDB client library.
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[mysql]"; then
    echo "error: mysqlclient did not build; scripts/mariadb_setup installs what it needs." >&2
    exit 2
  fi
fi
flock -u 9
exec 9>&-
export PATH="$venv/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1
