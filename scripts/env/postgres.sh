# PostgreSQL from Debian's packages, as a project-owned instance: its own
# data directory and port, so it never touches a system PostgreSQL.

PG_USER=depman
PG_PASSWORD=depman
PG_DATABASE=depman

# PostgreSQL refuses to run as root: as root the server runs as Debian's
# `postgres` user, whose data must live where that user can reach (/root is
# private), so the data directory moves to /var/lib/postgresql.
if [[ $(id -u) == 0 ]]; then
  PG_RUN_AS=postgres
  PG_DATA=${DEPMAN_PG_DATA:-/var/lib/postgresql/depman-dev}
else
  PG_RUN_AS=
  PG_DATA=${DEPMAN_PG_DATA:-$DEPMAN_STATE/postgres}
fi
PG_LOG=$PG_DATA/server.log

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [[ -x $dir/initdb ]] && echo "$dir"
}

as_pg() {
  if [[ -n $PG_RUN_AS ]]; then
    runuser -u "$PG_RUN_AS" -- "$@"
  else
    "$@"
  fi
}

install_postgres() {
  pg_bindir >/dev/null && return 0
  require_command apt-get "PostgreSQL is missing and there is no apt-get: install PostgreSQL 15 or newer (initdb, pg_ctl) under /usr/lib/postgresql"
  [[ $(id -u) == 0 ]] || die "PostgreSQL is missing: run 'sudo apt-get install -y postgresql', then make env again"
  say "installing PostgreSQL from Debian's packages"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } ||
    die "apt-get install postgresql failed (output above): check that Debian's package mirror is reachable"
  pg_bindir >/dev/null || die "PostgreSQL was installed but initdb is not under /usr/lib/postgresql/*/bin"
}

pg_ready() {
  "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$DEPMAN_PG_PORT"
}

postgres_up() {
  install_postgres
  local bin
  bin=$(pg_bindir)
  if as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1 && pg_ready; then
    say "PostgreSQL already up on port $DEPMAN_PG_PORT"
    return 0
  fi
  require_free_port "$DEPMAN_PG_PORT" DEPMAN_PG_PORT
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    say "creating PostgreSQL data directory $PG_DATA"
    mkdir -p "$PG_DATA"
    [[ -n $PG_RUN_AS ]] && chown "$PG_RUN_AS:" "$PG_DATA"
    chmod 700 "$PG_DATA"
    as_pg "$bin/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >/dev/null || die "initdb failed in $PG_DATA: remove that folder and run make env again"
  fi
  # Tests create a database each; the defaults are sized for that, not for load.
  # pg_stat_statements is loaded for make profile-api (its cost is a hash
  # update per statement).
  as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start -o \
    "-p $DEPMAN_PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DATA -c max_connections=500 -c fsync=off -c shared_preload_libraries=pg_stat_statements" \
    >/dev/null || die "PostgreSQL did not start: see $PG_LOG"
  wait_until 30 "PostgreSQL up on port $DEPMAN_PG_PORT" pg_ready || die "PostgreSQL does not answer on port $DEPMAN_PG_PORT: see $PG_LOG"
  pg_create_database
}

pg_create_database() {
  # The superuser connects over the socket (trusted); TCP asks for a password.
  local psql=("$(pg_bindir)/psql" -qAt -h "$PG_DATA" -p "$DEPMAN_PG_PORT" -U postgres -d postgres)
  "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'" | grep -q 1 ||
    "${psql[@]}" -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'" >/dev/null
  "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'" | grep -q 1 ||
    "${psql[@]}" -c "CREATE DATABASE $PG_DATABASE OWNER $PG_USER" >/dev/null
}

postgres_down() {
  local bin
  bin=$(pg_bindir) || return 0
  [[ -f $PG_DATA/postmaster.pid ]] || return 0
  as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 && say "PostgreSQL stopped"
}

postgres_url() {
  echo "postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$DEPMAN_PG_PORT/$PG_DATABASE"
}

postgres_status() {
  if pg_ready 2>/dev/null; then
    echo "postgres   up    $(postgres_url)  data $PG_DATA"
  else
    echo "postgres   down  (port $DEPMAN_PG_PORT, data $PG_DATA)"
  fi
}
