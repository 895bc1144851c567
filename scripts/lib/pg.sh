# Throwaway PostgreSQL clusters for tests and local clusters (sourced, not run).
# Needs Debian's postgresql-15 (or another version) binaries; as root it runs them as the
# `postgres` user through runuser.

pg_bin=""
for dir in /usr/lib/postgresql/*/bin; do
  [ -x "$dir/initdb" ] && pg_bin="$dir"
done

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# pg_start DIR PORT: creates and starts a cluster in DIR listening on 127.0.0.1:PORT, trusting
# local connections (user postgres). Prints nothing on success.
pg_start() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_pg "$pg_bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
  as_pg "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off" \
    start >/dev/null
}

# pg_stop DIR: stops the cluster and removes DIR.
pg_stop() {
  local dir=$1
  as_pg "$pg_bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
