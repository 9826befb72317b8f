#!/usr/bin/env bash
# A private PostgreSQL for happn-rs' cluster tests: installed from Debian's packages when missing,
# initialised in a temporary directory, listening on a free port of 127.0.0.1 only (its unix
# socket in that directory), owned by whoever runs this (as root: the `postgres` user, since
# PostgreSQL refuses to run as root), never a system service.
#
#   scripts/pg.sh run CMD [ARGS...]   start one, run CMD with HAPPN_PG_URL and HAPPN_PG_DIR set,
#                                     then stop it and remove its directory (also on failure or
#                                     Ctrl-C); exits with CMD's status. What scripts/test.sh uses.
#   scripts/pg.sh start               start one and print `export HAPPN_PG_URL=…` and
#                                     `export HAPPN_PG_DIR=…` lines (eval them); stop it with
#                                     `scripts/pg.sh stop` (it is not stopped by itself).
#   scripts/pg.sh stop [DIR]          stop the instance in DIR (default $HAPPN_PG_DIR), remove DIR.
#   scripts/pg.sh url [DIR]           print its URL.
#   scripts/pg.sh server-stop [DIR]   stop the server but keep its data (tests: the database
#   scripts/pg.sh server-start [DIR]  goes away and comes back on the same port).
#   scripts/pg.sh restart [DIR]       pg_ctl restart (fast shutdown).
#   source scripts/pg.sh              defines pg_start / pg_stop; pg_start exports HAPPN_PG_URL
#                                     and HAPPN_PG_DIR and stops the instance when the sourcing
#                                     shell exits (an EXIT trap).
#
# The server is started with every descriptor above 2 closed and its output in a log file: a
# long-lived server that inherited a lock file's descriptor (a caller under `flock`) or the pipe
# of a `$(...)` would hold them until it stops.

_pg_die() {
  echo "pg.sh: $*" >&2
  return 1
}

# The newest installed server's bin directory, installing Debian's postgresql when none is.
_pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    if [ "$(id -u)" != 0 ]; then
      _pg_die "PostgreSQL is not installed; run as root (or: sudo apt-get install -y postgresql)" || return 1
    fi
    echo "pg.sh: installing PostgreSQL from Debian's packages" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2 \
      || { _pg_die "apt-get install postgresql failed"; return 1; }
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -x "$bin/initdb" ] || { _pg_die "initdb not found after installing postgresql"; return 1; }
  fi
  echo "$bin"
}

# Run a PostgreSQL program as the instance's owner: `postgres` when we are root.
_pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A TCP port on 127.0.0.1 that nothing listens on now (the server's start still fails, and is
# retried with another, if something takes it meanwhile).
_pg_free_port() {
  local port tries=0
  while [ $tries -lt 50 ]; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
    tries=$((tries + 1))
  done
  _pg_die "no free port found"
}

# pg_ctl start for DIR on the port recorded in DIR/port, with no inherited descriptor but 0-2,
# and those pointing at /dev/null and the log.
_pg_ctl_start() {
  local dir=$1 bin port
  bin=$(cat "$dir/bin") && port=$(cat "$dir/port") || return 1
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-"; fi
    done
    exec </dev/null >>"$dir/pg_ctl.log" 2>&1
    cd "$dir" && _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir" start
  )
}

_pg_url_of() {
  echo "postgres://postgres@127.0.0.1:$(cat "$1/port")/postgres"
}

# Start a fresh instance; prints its directory.
_pg_start_instance() {
  local bin dir port attempt
  bin=$(_pg_bin) || return 1
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { _pg_die "user postgres missing (the postgresql package creates it)"; return 1; }
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/happn-pg.XXXXXX") || return 1
  chmod 700 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  echo "$bin" >"$dir/bin"
  if ! _pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
    # Older images may lack the C.UTF-8 locale: C keeps byte order, which is all we need.
    rm -rf "${dir:?}/data"
    _pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 \
      --locale=C >>"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; _pg_die "initdb failed"; return 1; }
  fi
  for attempt in 1 2 3 4 5; do
    port=$(_pg_free_port) || break
    echo "$port" >"$dir/port"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/port" "$dir/bin"
    if _pg_ctl_start "$dir"; then
      echo "$dir"
      return 0
    fi
  done
  cat "$dir/server.log" "$dir/pg_ctl.log" >&2 2>/dev/null
  rm -rf "$dir"
  _pg_die "the server did not start"
}

_pg_stop_instance() {
  local dir=$1
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    _pg_as_owner "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1
  fi
  rm -rf "$dir"
}

_pg_dir_arg() {
  local dir=${1:-${HAPPN_PG_DIR:-}}
  [ -n "$dir" ] && [ -f "$dir/port" ] || { _pg_die "no instance directory (give it or set HAPPN_PG_DIR)"; return 1; }
  echo "$dir"
}

# For `source scripts/pg.sh`.
pg_start() {
  HAPPN_PG_DIR=$(_pg_start_instance) || return 1
  HAPPN_PG_URL=$(_pg_url_of "$HAPPN_PG_DIR")
  export HAPPN_PG_DIR HAPPN_PG_URL
  trap 'pg_stop' EXIT
  echo "pg.sh: PostgreSQL at $HAPPN_PG_URL (dir $HAPPN_PG_DIR)" >&2
}

pg_stop() {
  _pg_stop_instance "${HAPPN_PG_DIR:-}"
  unset HAPPN_PG_DIR HAPPN_PG_URL
}

# Sourced: only the functions. Run: a subcommand.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  cmd=${1:-}
  shift || true
  case "$cmd" in
    run)
      [ $# -gt 0 ] || { _pg_die "usage: pg.sh run CMD [ARGS...]"; exit 2; }
      pg_start || exit 1
      trap 'pg_stop' EXIT
      trap 'exit 130' INT TERM
      "$@"
      exit $?
      ;;
    start)
      dir=$(_pg_start_instance) || exit 1
      echo "export HAPPN_PG_DIR=$dir"
      echo "export HAPPN_PG_URL=$(_pg_url_of "$dir")"
      ;;
    stop)
      dir=$(_pg_dir_arg "${1:-}") || exit 1
      _pg_stop_instance "$dir"
      ;;
    url)
      dir=$(_pg_dir_arg "${1:-}") || exit 1
      _pg_url_of "$dir"
      ;;
    server-stop)
      dir=$(_pg_dir_arg "${1:-}") || exit 1
      _pg_as_owner "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
      ;;
    server-start)
      dir=$(_pg_dir_arg "${1:-}") || exit 1
      _pg_ctl_start "$dir" || { tail -n 20 "$dir/server.log" >&2; exit 1; }
      ;;
    restart)
      dir=$(_pg_dir_arg "${1:-}") || exit 1
      _pg_as_owner "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null \
        && _pg_ctl_start "$dir" || { tail -n 20 "$dir/server.log" >&2; exit 1; }
      ;;
    *)
      sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
fi
