#!/usr/bin/env bash
# Real PostgreSQL 15, OpenSearch 2.19 and NATS (JetStream) for development, tests and CI,
# started natively (no Docker engine needed) and installed by this script on a fresh machine.
#
#   deploy/dev/services.sh up [--cluster]        start what is not running (idempotent); with
#                                                --cluster also the dev cluster (cluster up)
#   deploy/dev/services.sh cluster up|down|status|env
#                                                a 3-node NATS cluster (JetStream on each) and a
#                                                2-node OpenSearch cluster on ports and dirs of
#                                                their own (.dev/cluster/); the single nodes above
#                                                are never touched
#   deploy/dev/services.sh cluster kill|start|restart [--hard] NODE
#                                                one node: nats-0..2, opensearch-0..1 (kill: SIGKILL)
#   deploy/dev/services.sh down                  stop everything (the cluster too)
#   deploy/dev/services.sh status                what runs, where
#   deploy/dev/services.sh restart [--hard] SVC  restart postgres|opensearch|nats keeping its data
#                                                (--hard: SIGKILL instead of a clean stop)
#   deploy/dev/services.sh env                   print the export lines (also in .dev/env)
#   deploy/dev/services.sh clean                 down, then delete .dev/ state
#
# State lives under .dev/ at the repository root (gitignored). Tests find the services
# through .dev/env (FLUSSO_TEST_*), see internal/testenv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEV="$ROOT/.dev"
OS_SRC="$ROOT/deploy/dev/opensearch"

PG_MAJOR=15
PG_PORT="${FLUSSO_DEV_PG_PORT:-54329}"
OS_PORT="${FLUSSO_DEV_OPENSEARCH_PORT:-59200}"
OS_TRANSPORT_PORT="${FLUSSO_DEV_OPENSEARCH_TRANSPORT_PORT:-59300}"
OS_HEAP="${FLUSSO_DEV_OPENSEARCH_HEAP:-1g}"
OS_BUDGET=180 # seconds for OpenSearch to reach yellow (cold JVM on 2 cores)
NATS_PORT="${FLUSSO_DEV_NATS_PORT:-54222}"
NATS_BIN="$ROOT/bin/nats-server"

# The dev cluster (cmd_cluster) has ports and directories of its own: the single
# nodes above, which every test uses, are never touched by it.
CL_DIR="$DEV/cluster"
CL_NATS_PORTS=(54231 54232 54233)
CL_NATS_ROUTE_PORTS=(54241 54242 54243)
CL_OS_PORTS=(59201 59202)
CL_OS_TRANSPORT_PORTS=(59301 59302)
CL_OS_HEAP="${FLUSSO_DEV_CLUSTER_OPENSEARCH_HEAP:-512m}"

PG_DIR="$DEV/postgres"
OS_DIR="$DEV/opensearch"
NATS_DIR="$DEV/nats"

log() { printf '[services] %s\n' "$*" >&2; }
die() {
	printf '[services] ERROR: %s\n' "$*" >&2
	exit 1
}
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

# port_busy PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# alive PIDFILE WORD: the pid in PIDFILE runs and its command line mentions WORD
# (guards against a stale pid file whose pid was reused).
alive() {
	local pid
	[[ -s "$1" ]] || return 1
	pid="$(<"$1")"
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	local cmdline
	cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")" || return 1
	[[ "$cmdline" == *"$2"* ]]
}

# stop_pid PIDFILE WORD HARD: SIGTERM (or SIGKILL when HARD=1), then wait up to 60 s.
stop_pid() {
	local pidfile="$1" word="$2" hard="${3:-0}" pid i
	alive "$pidfile" "$word" || {
		rm -f "$pidfile"
		return 0
	}
	pid="$(<"$pidfile")"
	if [[ "$hard" == 1 ]]; then kill -KILL "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
	for ((i = 0; i < 600; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid did not stop in 60s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.5
	fi
	rm -f "$pidfile"
}

as_root() { [[ "$(id -u)" == 0 ]]; }

apt_install() {
	as_root || die "missing packages ($*): run 'sudo apt-get install -y $*' and retry"
	log "installing $* with apt-get"
	if [[ ! -f "$DEV/.apt-updated" ]]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
		mkdir -p "$DEV" && touch "$DEV/.apt-updated"
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 || die "apt-get install $* failed"
}

ensure_tools() {
	local missing=()
	command -v curl >/dev/null || missing+=(curl)
	command -v runuser >/dev/null || missing+=(util-linux)
	((${#missing[@]} == 0)) || apt_install "${missing[@]}"
}

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() {
	local d
	for d in "/usr/lib/postgresql/$PG_MAJOR/bin" /usr/lib/postgresql/*/bin; do
		[[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/psql" ]] && {
			echo "$d"
			return 0
		}
	done
	return 1
}

# The Debian package is installed on demand: machines start without it.
pg_install() {
	pg_bindir >/dev/null && return 0
	apt_install postgresql
	pg_bindir >/dev/null || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb was found"
}

# PostgreSQL refuses to run as root: as root use the Debian 'postgres' user, else create
# a system user for it.
PG_USER=""
pg_user() {
	if ! as_root; then
		PG_USER="$(id -un)"
		return
	fi
	if id postgres >/dev/null 2>&1; then
		PG_USER=postgres
	else
		id flusso-dev >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin flusso-dev
		PG_USER=flusso-dev
	fi
}

pg_run() {
	[[ -n "$PG_USER" ]] || pg_user
	# From /: PG_USER may not be allowed into the current directory.
	if as_root; then (cd / && runuser -u "$PG_USER" -- "$@"); else "$@"; fi
}

# pg_home is the real cluster directory: the server's user reaches it without passing
# through .dev/ (see pg_prepare_dir).
pg_home() { readlink -f "$PG_DIR"; }

# The data directory must be reachable by PG_USER; a checkout under a private directory
# (e.g. /root) is not, so keep the cluster elsewhere and link it from .dev/.
pg_prepare_dir() {
	mkdir -p "$DEV"
	if [[ -L "$PG_DIR" || -d "$PG_DIR" ]]; then
		[[ -d "$PG_DIR/" ]] || rm -f "$PG_DIR"
	fi
	if [[ ! -e "$PG_DIR" ]]; then
		mkdir -p "$PG_DIR"
		as_root && chown "$PG_USER": "$PG_DIR"
		if ! pg_run test -w "$PG_DIR"; then
			local alt
			alt="/var/tmp/flusso-dev-pg-$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)"
			log "$PG_USER cannot reach $PG_DIR: keeping the cluster in $alt"
			rmdir "$PG_DIR"
			mkdir -p "$alt"
			chown "$PG_USER": "$alt"
			ln -s "$alt" "$PG_DIR"
		fi
	fi
}

# pg_postmaster_pid prints the pid of the cluster's live postmaster, if any. pg_ctl would
# trust any live pid in postmaster.pid, but after a machine restart that pid may belong
# to another process.
pg_postmaster_pid() {
	local pid
	pid="$(head -n1 "$(pg_home)/data/postmaster.pid" 2>/dev/null)" || return 1
	[[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
	local cmdline
	cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")" || return 1
	[[ "$cmdline" == *postgres* ]] || return 1
	echo "$pid"
}

pg_running() { pg_postmaster_pid >/dev/null; }

pg_psql() {
	PGPASSWORD=flusso "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$PG_PORT" -U flusso -d postgres "$@"
}

pg_init() {
	local bin="$1"
	if [[ -f "$(pg_home)/data/PG_VERSION" && "$(<"$(pg_home)/data/PG_VERSION")" != "$("$bin/pg_ctl" --version | awk '{ split($3, v, "."); print v[1] }')" ]]; then
		log "dev cluster was made by another PostgreSQL major version: recreating it"
		pg_run rm -rf "$(pg_home)/data"
	fi
	[[ -f "$(pg_home)/data/PG_VERSION" ]] && return 0
	log "initdb $PG_DIR/data"
	local pw
	pw="$(pg_run mktemp)"
	pg_run sh -c "printf 'flusso\n' > '$pw'"
	# The bootstrap superuser is 'flusso' itself, so the cluster is usable over TCP only.
	pg_run "$bin/initdb" -D "$(pg_home)/data" -U flusso --pwfile="$pw" \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$(pg_home)/initdb.log" 2>&1 ||
		{
			pg_run rm -f "$pw"
			cat "$(pg_home)/initdb.log" >&2
			die "initdb failed"
		}
	pg_run rm -f "$pw"
	pg_run sh -c "cat >> '$(pg_home)/data/postgresql.conf'" <<EOF

# --- flusso dev (deploy/dev/services.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_connections = 200
# Throwaway dev data: speed over safety from a machine crash. A crash of the
# server itself (tests kill it) must still keep every acknowledged commit, as
# in production: builds read committed rows, and a commit lost after one was
# built would leave a document Postgres no longer agrees with. With fsync off,
# synchronous_commit = on only costs a write() per commit.
fsync = off
synchronous_commit = on
full_page_writes = off
logging_collector = off
log_min_messages = warning
EOF
}

pg_roles() { pg_psql -f "$ROOT/deploy/dev/postgres/roles.sql" >/dev/null; }

pg_up() {
	local t0 bin
	t0="$(now)"
	pg_install
	bin="$(pg_bindir)"
	pg_user
	pg_prepare_dir
	if pg_running; then
		pg_roles
		PG_STATUS="already running"
		return
	fi
	pg_init "$bin"
	# Left by a killed server (the machine was stopped): the server would refuse to start
	# if its pid now belongs to another process. No postmaster runs here (pg_running).
	rm -f "$(pg_home)/data/postmaster.pid"
	port_busy "$PG_PORT" && die "port $PG_PORT is taken by another process (another checkout's services? stop them first)"
	pg_run "$bin/pg_ctl" -D "$(pg_home)/data" -l "$(pg_home)/postgres.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null ||
		{
			tail -20 "$(pg_home)/postgres.log" >&2
			die "PostgreSQL did not start (log: $PG_DIR/postgres.log)"
		}
	pg_roles
	PG_STATUS="started in $(since "$t0")"
}

pg_down() {
	local bin
	bin="$(pg_bindir)" || return 0
	pg_user
	pg_running || return 0
	pg_run "$bin/pg_ctl" -D "$(pg_home)/data" -m fast -w -t 60 stop >/dev/null
}

pg_restart() {
	local hard="$1" bin t0
	t0="$(now)"
	bin="$(pg_bindir)" || die "PostgreSQL is not installed: run up first"
	pg_user
	pg_running || die "postgres is not running: run up first"
	if [[ "$hard" == 1 ]]; then
		# Immediate mode is PostgreSQL's crash: no shutdown checkpoint, WAL replay on start.
		pg_run "$bin/pg_ctl" -D "$(pg_home)/data" -m immediate -w -t 60 stop >/dev/null
	else
		pg_run "$bin/pg_ctl" -D "$(pg_home)/data" -m fast -w -t 60 stop >/dev/null
	fi
	pg_run "$bin/pg_ctl" -D "$(pg_home)/data" -l "$(pg_home)/postgres.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null ||
		die "PostgreSQL did not restart (log: $PG_DIR/postgres.log)"
	log "postgres restarted in $(since "$t0")"
}

# ---------------------------------------------------------------- OpenSearch

os_stamp() {
	cat "$OS_SRC/pom.xml" "$OS_SRC"/src/main/java/*.java "$OS_SRC"/src/main/resources/* | sha1sum | cut -c1-40
}

# The built launcher (classes + jars) is kept per source hash outside the checkout, so a
# fresh clone on the same machine (CI) starts without Maven; mvn runs only when the
# sources change (it costs 10-20 s even with ~/.m2 filled).
OS_CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/flusso-dev"
OS_BUILD_DIR=""

os_build() {
	local stamp t0 tmp
	stamp="$(os_stamp)"
	OS_BUILD_DIR="$OS_CACHE_ROOT/opensearch-$stamp"
	compgen -G "$OS_BUILD_DIR/lib/opensearch-2*.jar" >/dev/null && return 0
	command -v java >/dev/null || apt_install openjdk-17-jdk-headless
	command -v mvn >/dev/null || apt_install maven
	t0="$(now)"
	log "building the OpenSearch launcher (mvn package; the first run downloads ~60 MB)"
	(cd "$OS_SRC" && mvn -B -q package >"$DEV/opensearch-build.log" 2>&1) ||
		{
			tail -40 "$DEV/opensearch-build.log" >&2
			die "mvn package failed in $OS_SRC (log: $DEV/opensearch-build.log)"
		}
	mkdir -p "$OS_CACHE_ROOT"
	tmp="$(mktemp -d "$OS_CACHE_ROOT/.build.XXXXXX")"
	cp -r "$OS_SRC/target/classes" "$OS_SRC/target/lib" "$tmp/"
	# Another checkout may have finished the same build meanwhile: keep the first.
	mv -T "$tmp" "$OS_BUILD_DIR" 2>/dev/null || rm -rf "$tmp"
	OS_BUILD="built in $(since "$t0")"
	log "OpenSearch launcher $OS_BUILD"
}

os_healthy() {
	curl -sf --max-time 5 "http://127.0.0.1:$OS_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1
}

# os_start: launch on the existing $OS_DIR/home and wait for yellow.
os_start() {
	local t0 pid
	t0="$(now)"
	port_busy "$OS_PORT" && die "port $OS_PORT is taken by another process (another checkout's services? stop them first)"
	mkdir -p "$OS_DIR/home/tmp" "$OS_DIR/snapshots"
	(
		cd "$OS_DIR"
		exec setsid java \
			-Xms"$OS_HEAP" -Xmx"$OS_HEAP" \
			-XX:+UseG1GC -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$OS_DIR/home" \
			-Djava.io.tmpdir="$OS_DIR/home/tmp" \
			-Djava.locale.providers=SPI,COMPAT \
			-Dlog4j2.disable.jmx=true -Dio.netty.noUnsafe=true -Dfile.encoding=UTF-8 \
			-Dflusso.dev.opensearch=1 \
			-cp "$OS_BUILD_DIR/classes:$OS_BUILD_DIR/lib/*" Main \
			path.home="$OS_DIR/home" path.repo="$OS_DIR/snapshots" \
			http.port="$OS_PORT" transport.port="$OS_TRANSPORT_PORT"
	) >>"$OS_DIR/opensearch.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$OS_DIR/pid"
	while ! os_healthy; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -40 "$OS_DIR/opensearch.log" >&2
			die "OpenSearch exited during start (log: $OS_DIR/opensearch.log)"
		fi
		if awk -v a="$t0" -v b="$EPOCHREALTIME" -v m="$OS_BUDGET" 'BEGIN { exit !(b - a > m) }'; then
			tail -40 "$OS_DIR/opensearch.log" >&2
			stop_pid "$OS_DIR/pid" flusso.dev.opensearch
			die "OpenSearch not yellow after ${OS_BUDGET}s (log: $OS_DIR/opensearch.log)"
		fi
		sleep 0.5
	done
	OS_STATUS="started in $(since "$t0")"
}

os_up() {
	mkdir -p "$OS_DIR"
	if alive "$OS_DIR/pid" flusso.dev.opensearch; then
		OS_STATUS="already running"
		return
	fi
	os_build
	# A fresh data directory on every start from stopped: no test depends on old indexes.
	rm -rf "$OS_DIR/home"
	: >"$OS_DIR/opensearch.log"
	os_start
}

os_down() { stop_pid "$OS_DIR/pid" flusso.dev.opensearch "${1:-0}"; }

os_restart() {
	local hard="$1"
	alive "$OS_DIR/pid" flusso.dev.opensearch || die "opensearch is not running: run up first"
	os_build
	os_down "$hard"
	os_start # same home: indexes are kept
	log "opensearch restarted: $OS_STATUS"
}

# ---------------------------------------------------------------- NATS

# Built from the nats-server module pinned in go.mod, so the binary matches the embedded
# server the tests and `flusso run` use.
nats_build() {
	local t0
	t0="$(now)"
	command -v go >/dev/null || die "go is not on PATH"
	(cd "$ROOT" && go build -o "$NATS_BIN" github.com/nats-io/nats-server/v2) ||
		die "go build github.com/nats-io/nats-server/v2 failed"
	NATS_BUILD="$(since "$t0")"
}

nats_start() {
	local t0 pid i
	t0="$(now)"
	port_busy "$NATS_PORT" && die "port $NATS_PORT is taken by another process (another checkout's services? stop them first)"
	mkdir -p "$NATS_DIR/store"
	setsid "$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$NATS_DIR/store" -n flusso-dev \
		>>"$NATS_DIR/nats.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$NATS_DIR/pid"
	for ((i = 0; i < 300; i++)); do
		port_busy "$NATS_PORT" && break
		kill -0 "$pid" 2>/dev/null || {
			tail -20 "$NATS_DIR/nats.log" >&2
			die "nats-server exited during start (log: $NATS_DIR/nats.log)"
		}
		sleep 0.1
	done
	port_busy "$NATS_PORT" || die "nats-server did not listen on $NATS_PORT in 30s"
	NATS_STATUS="started in $(since "$t0")"
}

nats_up() {
	nats_build
	mkdir -p "$NATS_DIR"
	if alive "$NATS_DIR/pid" "$NATS_BIN"; then
		NATS_STATUS="already running"
		return
	fi
	nats_start
}

nats_down() { stop_pid "$NATS_DIR/pid" "$NATS_BIN" "${1:-0}"; }

nats_restart() {
	local hard="$1"
	alive "$NATS_DIR/pid" "$NATS_BIN" || die "nats is not running: run up first"
	nats_down "$hard"
	nats_start
	log "nats restarted: $NATS_STATUS"
}

# ---------------------------------------------------------------- the dev cluster

join_by() {
	local IFS="$1"
	shift
	echo "$*"
}

cl_nats_urls() {
	local p urls=()
	for p in "${CL_NATS_PORTS[@]}"; do urls+=("nats://127.0.0.1:$p"); done
	join_by , "${urls[@]}"
}

cl_os_urls() {
	local p urls=()
	for p in "${CL_OS_PORTS[@]}"; do urls+=("http://127.0.0.1:$p"); done
	join_by , "${urls[@]}"
}

cl_nats_alive() { alive "$CL_DIR/nats-$1/pid" "flusso-dev-nats-$1"; }
cl_os_alive() { alive "$CL_DIR/opensearch-$1/pid" "flusso.dev.opensearch.cluster=$1"; }

# cl_nats_start I: node I of the NATS cluster, JetStream on, routes to every node.
cl_nats_start() {
	local i="$1" dir="$CL_DIR/nats-$1" port="${CL_NATS_PORTS[$1]}" routes=() p pid j
	for p in "${CL_NATS_ROUTE_PORTS[@]}"; do routes+=("nats://127.0.0.1:$p"); done
	port_busy "$port" && die "port $port is taken by another process (another checkout's cluster? stop it first)"
	mkdir -p "$dir/store"
	setsid "$NATS_BIN" -a 127.0.0.1 -p "$port" -js -sd "$dir/store" -n "flusso-dev-nats-$i" \
		--cluster_name flusso-dev --cluster "nats://127.0.0.1:${CL_NATS_ROUTE_PORTS[$i]}" --routes "$(join_by , "${routes[@]}")" \
		>>"$dir/nats.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/pid"
	for ((j = 0; j < 300; j++)); do
		port_busy "$port" && return 0
		kill -0 "$pid" 2>/dev/null || {
			tail -20 "$dir/nats.log" >&2
			die "nats-$i exited during start (log: $dir/nats.log)"
		}
		sleep 0.1
	done
	die "nats-$i did not listen on $port in 30s"
}

# cl_os_start I: node I of the OpenSearch cluster on its existing home; discovery on
# loopback, both nodes cluster-manager eligible. It returns without waiting (cl_os_wait).
cl_os_start() {
	local i="$1" dir="$CL_DIR/opensearch-$1" seeds=() names=() p k
	for p in "${CL_OS_TRANSPORT_PORTS[@]}"; do seeds+=("127.0.0.1:$p"); done
	for k in "${!CL_OS_PORTS[@]}"; do names+=("flusso-dev-cluster-$k"); done
	port_busy "${CL_OS_PORTS[$i]}" && die "port ${CL_OS_PORTS[$i]} is taken by another process (another checkout's cluster? stop it first)"
	mkdir -p "$dir/home/tmp"
	(
		cd "$dir"
		exec setsid java \
			-Xms"$CL_OS_HEAP" -Xmx"$CL_OS_HEAP" \
			-XX:+UseG1GC -Djava.io.tmpdir="$dir/home/tmp" \
			-Djava.locale.providers=SPI,COMPAT \
			-Dlog4j2.disable.jmx=true -Dio.netty.noUnsafe=true -Dfile.encoding=UTF-8 \
			-Dflusso.dev.opensearch.cluster="$i" \
			-cp "$OS_BUILD_DIR/classes:$OS_BUILD_DIR/lib/*" Main \
			path.home="$dir/home" cluster.name=flusso-dev-cluster node.name="flusso-dev-cluster-$i" \
			discovery.type=zen discovery.seed_hosts="$(join_by , "${seeds[@]}")" \
			cluster.initial_cluster_manager_nodes="$(join_by , "${names[@]}")" \
			http.port="${CL_OS_PORTS[$i]}" transport.port="${CL_OS_TRANSPORT_PORTS[$i]}"
	) >>"$dir/opensearch.log" 2>&1 </dev/null &
	echo "$!" >"$dir/pid"
}

# cl_os_wait: every node answers and the cluster holds them all, at least yellow.
cl_os_wait() {
	local t0 n="${#CL_OS_PORTS[@]}" i ok
	t0="$(now)"
	while :; do
		ok=1
		for i in "${!CL_OS_PORTS[@]}"; do
			curl -sf --max-time 5 "http://127.0.0.1:${CL_OS_PORTS[$i]}/_cluster/health?wait_for_nodes=$n&wait_for_status=yellow&timeout=1s" >/dev/null 2>&1 || ok=0
		done
		[[ "$ok" == 1 ]] && return 0
		for i in "${!CL_OS_PORTS[@]}"; do
			cl_os_alive "$i" || {
				tail -40 "$CL_DIR/opensearch-$i/opensearch.log" >&2
				die "opensearch-$i exited during start (log: $CL_DIR/opensearch-$i/opensearch.log)"
			}
		done
		if awk -v a="$t0" -v b="$EPOCHREALTIME" -v m="$OS_BUDGET" 'BEGIN { exit !(b - a > m) }'; then
			die "the OpenSearch cluster did not form with $n nodes in ${OS_BUDGET}s (logs: $CL_DIR/opensearch-*/opensearch.log)"
		fi
		sleep 0.5
	done
}

cl_env_lines() {
	cat <<EOF
# Written by deploy/dev/services.sh cluster up; read by make chaos-cluster and demo-cluster.
export FLUSSO_TEST_CLUSTER_NATS_URL='$(cl_nats_urls)'
export FLUSSO_TEST_CLUSTER_OPENSEARCH_URL='$(cl_os_urls)'
export FLUSSO_TEST_CLUSTER_SERVICES='$ROOT/deploy/dev/services.sh'
EOF
}

cl_write_env() {
	mkdir -p "$DEV"
	cl_env_lines >"$DEV/cluster.env.tmp"
	mv "$DEV/cluster.env.tmp" "$DEV/cluster.env"
}

cl_up() {
	local t0 i started=() fresh=1
	t0="$(now)"
	ensure_tools
	nats_build
	for i in "${!CL_NATS_PORTS[@]}"; do
		mkdir -p "$CL_DIR/nats-$i"
		cl_nats_alive "$i" || {
			cl_nats_start "$i"
			started+=("nats-$i")
		}
	done
	os_build
	for i in "${!CL_OS_PORTS[@]}"; do
		cl_os_alive "$i" && fresh=0
	done
	for i in "${!CL_OS_PORTS[@]}"; do
		mkdir -p "$CL_DIR/opensearch-$i"
		cl_os_alive "$i" && continue
		# As for the single node: a fresh cluster when none of it runs.
		[[ "$fresh" == 1 ]] && rm -rf "$CL_DIR/opensearch-$i/home"
		cl_os_start "$i"
		started+=("opensearch-$i")
	done
	cl_os_wait
	cl_write_env
	cat <<EOF
[services] cluster up in $(since "$t0") (started: ${started[*]:-none})
  nats        $(cl_nats_urls)  (JetStream on each; routes on 127.0.0.1:$(join_by , "${CL_NATS_ROUTE_PORTS[@]}"))
  opensearch  $(cl_os_urls)  (heap $CL_OS_HEAP each)
  env         source $DEV/cluster.env
EOF
}

cl_down() {
	local i
	for i in "${!CL_NATS_PORTS[@]}"; do stop_pid "$CL_DIR/nats-$i/pid" "flusso-dev-nats-$i"; done
	for i in "${!CL_OS_PORTS[@]}"; do stop_pid "$CL_DIR/opensearch-$i/pid" "flusso.dev.opensearch.cluster=$i"; done
	log "cluster stopped"
}

cl_status() {
	local i rc=0 health
	for i in "${!CL_NATS_PORTS[@]}"; do
		if cl_nats_alive "$i"; then
			echo "nats-$i        running  nats://127.0.0.1:${CL_NATS_PORTS[$i]}  pid $(<"$CL_DIR/nats-$i/pid")"
		else
			echo "nats-$i        stopped"
			rc=3
		fi
	done
	for i in "${!CL_OS_PORTS[@]}"; do
		if cl_os_alive "$i"; then
			health="$(curl -s --max-time 5 "http://127.0.0.1:${CL_OS_PORTS[$i]}/_cluster/health" | sed -E 's/.*"status":"([a-z]+)".*"number_of_nodes":([0-9]+).*/\1, \2 nodes/')" || true
			echo "opensearch-$i  running  http://127.0.0.1:${CL_OS_PORTS[$i]}  pid $(<"$CL_DIR/opensearch-$i/pid") health ${health:-unknown}"
		else
			echo "opensearch-$i  stopped"
			rc=3
		fi
	done
	return "$rc"
}

# cl_node NODE: checks a node name (nats-I or opensearch-I) and prints its kind and I.
cl_node() {
	local kind="${1%-*}" i="${1##*-}" n
	case "$kind" in
	nats) n="${#CL_NATS_PORTS[@]}" ;;
	opensearch) n="${#CL_OS_PORTS[@]}" ;;
	*) usage ;;
	esac
	[[ "$i" =~ ^[0-9]+$ ]] && ((i < n)) || usage
	echo "$kind $i"
}

# cl_kill NODE: SIGKILL one node, as a crash would, and leave it down.
cl_kill() {
	local kind i
	read -r kind i < <(cl_node "$1")
	if [[ "$kind" == nats ]]; then
		stop_pid "$CL_DIR/nats-$i/pid" "flusso-dev-nats-$i" 1
	else
		stop_pid "$CL_DIR/opensearch-$i/pid" "flusso.dev.opensearch.cluster=$i" 1
	fi
}

# cl_start NODE: start one node that is down, keeping its data; an OpenSearch node
# returns once the cluster holds every node again.
cl_start() {
	local kind i
	read -r kind i < <(cl_node "$1")
	if [[ "$kind" == nats ]]; then
		cl_nats_alive "$i" || cl_nats_start "$i"
	else
		os_build
		cl_os_alive "$i" || cl_os_start "$i"
		cl_os_wait
	fi
}

cmd_cluster() {
	local sub="${1:-}" t0
	shift || true
	case "$sub" in
	up) cl_up ;;
	down) cl_down ;;
	status) cl_status ;;
	env) cl_env_lines ;;
	kill) cl_kill "${1:-}" ;;
	start) cl_start "${1:-}" ;;
	restart)
		local hard=0
		[[ "${1:-}" == --hard ]] && {
			hard=1
			shift
		}
		t0="$(now)"
		cl_node "${1:-}" >/dev/null
		if [[ "$hard" == 1 ]]; then cl_kill "$1"; else
			local kind i
			read -r kind i < <(cl_node "$1")
			if [[ "$kind" == nats ]]; then stop_pid "$CL_DIR/nats-$i/pid" "flusso-dev-nats-$i"; else stop_pid "$CL_DIR/opensearch-$i/pid" "flusso.dev.opensearch.cluster=$i"; fi
		fi
		cl_start "$1"
		log "$1 restarted in $(since "$t0")"
		;;
	*) usage ;;
	esac
}

# ---------------------------------------------------------------- env and commands

env_lines() {
	cat <<EOF
# Written by deploy/dev/services.sh; read by the Makefile and internal/testenv.
export FLUSSO_TEST_PG_URL='postgres://flusso:flusso@127.0.0.1:$PG_PORT/postgres?sslmode=disable'
export FLUSSO_TEST_PG_UNPRIV_ROLE='flusso_unpriv'
export FLUSSO_TEST_OPENSEARCH_URL='http://127.0.0.1:$OS_PORT'
export FLUSSO_TEST_NATS_SERVER='$NATS_BIN'
export FLUSSO_TEST_NATS_URL='nats://127.0.0.1:$NATS_PORT'
EOF
}

write_env() {
	mkdir -p "$DEV"
	env_lines >"$DEV/env.tmp"
	mv "$DEV/env.tmp" "$DEV/env"
}

cmd_up() {
	local t0
	t0="$(now)"
	ensure_tools
	mkdir -p "$DEV"
	PG_STATUS="" OS_STATUS="" NATS_STATUS="" NATS_BUILD="" OS_BUILD="up to date"
	pg_up
	nats_up
	os_up
	write_env
	cat <<EOF
[services] up in $(since "$t0")
  postgres    postgres://flusso:flusso@127.0.0.1:$PG_PORT/postgres  ($PG_STATUS)
  opensearch  http://127.0.0.1:$OS_PORT  ($OS_STATUS; launcher $OS_BUILD)
  nats        nats://127.0.0.1:$NATS_PORT  ($NATS_STATUS; binary $NATS_BIN built in $NATS_BUILD)
  env         source $DEV/env
EOF
}

cmd_down() {
	cl_down
	nats_down
	os_down
	pg_down
	log "stopped"
}

cmd_status() {
	local rc=0
	if pg_running; then
		echo "postgres    running  postgres://flusso:flusso@127.0.0.1:$PG_PORT/postgres  data $PG_DIR/data"
	else
		echo "postgres    stopped"
		rc=3
	fi
	if alive "$OS_DIR/pid" flusso.dev.opensearch; then
		local health
		health="$(curl -s --max-time 5 "http://127.0.0.1:$OS_PORT/_cluster/health" | sed -E 's/.*"status":"([a-z]+)".*/\1/')"
		echo "opensearch  running  http://127.0.0.1:$OS_PORT  pid $(<"$OS_DIR/pid") health ${health:-unknown}"
	else
		echo "opensearch  stopped"
		rc=3
	fi
	if alive "$NATS_DIR/pid" "$NATS_BIN"; then
		echo "nats        running  nats://127.0.0.1:$NATS_PORT  pid $(<"$NATS_DIR/pid")"
	else
		echo "nats        stopped"
		rc=3
	fi
	return "$rc"
}

usage() {
	sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

main() {
	local cmd="${1:-}"
	shift || true
	case "$cmd" in
	up)
		case "${1:-}" in
		"") cmd_up ;;
		--cluster) cmd_up && cl_up ;;
		*) usage ;;
		esac
		;;
	cluster) cmd_cluster "$@" ;;
	down) cmd_down ;;
	status) cmd_status ;;
	env)
		[[ -f "$DEV/env" ]] || write_env
		cat "$DEV/env"
		;;
	restart)
		local hard=0
		[[ "${1:-}" == --hard ]] && {
			hard=1
			shift
		}
		case "${1:-}" in
		postgres) pg_restart "$hard" ;;
		opensearch) os_restart "$hard" ;;
		nats) nats_restart "$hard" ;;
		*) usage ;;
		esac
		;;
	clean)
		cmd_down
		pg_user
		if [[ -L "$PG_DIR" ]]; then rm -rf "$(readlink "$PG_DIR")"; fi
		rm -rf "$DEV"
		log "removed $DEV"
		;;
	*) usage ;;
	esac
}

main "$@"
