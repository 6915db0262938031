# Sourced by a project's setup when DBTUNE_CORPUS_DB=mariadb (the default is the project's
# own database): mysqlclient in the project's venv, and its database laid anew (utf8mb4).
# The server at DBTUNE_CORPUS_MARIADB_HOST/PORT (127.0.0.1:3306), as
# DBTUNE_CORPUS_MARIADB_USER (root) with DBTUNE_CORPUS_MARIADB_PASSWORD (none).
corpus_mariadb_database() {  # corpus_mariadb_database DATABASE PYTHON
  local client=(mariadb -h "${DBTUNE_CORPUS_MARIADB_HOST:-127.0.0.1}"
    -P "${DBTUNE_CORPUS_MARIADB_PORT:-3306}" -u "${DBTUNE_CORPUS_MARIADB_USER:-root}"
    ${DBTUNE_CORPUS_MARIADB_PASSWORD:+-p"$DBTUNE_CORPUS_MARIADB_PASSWORD"})
  "$2" -m pip install --quiet mysqlclient
  "${client[@]}" -e "DROP DATABASE IF EXISTS $1; CREATE DATABASE $1 CHARACTER SET utf8mb4"
  # With USE_TZ, Django's date truncation (the admin's date_hierarchy) needs the server's
  # time zone tables.
  if [ "$("${client[@]}" -N -e "SELECT COUNT(*) FROM mysql.time_zone_name")" = 0 ]; then
    echo "setup: MariaDB has no time zone tables:" \
      "mariadb-tzinfo-to-sql /usr/share/zoneinfo | mariadb -u root mysql" >&2
    exit 1
  fi
}
