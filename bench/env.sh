#!/usr/bin/env bash
# A benchmark environment: the project plus the peer tools it is compared with, which are
# never dependencies of the package. Usage: bench/env.sh 5.2 (or 6.1); prints the venv path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
series="${1:?give a Django series: 5.2 or 6.1}"
python="${DBTUNE_PYTHON:-python3}"
venv="$root/.venv-bench-django$series"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e "$root[postgres,redis]" "django~=$series.0" tqdm djangorestframework django-taggit django-zeal nplusone gunicorn \
    django-cachalot django-cacheops
fi
echo "$venv"
