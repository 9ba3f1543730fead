#!/usr/bin/env bash
# Installs what the benchmark's PGSync comparison needs, idempotently:
# Redis from Debian's packages and PGSync (plus matplotlib, for the plot)
# from PyPI into bench/pgsync/.venv. Versions are pinned so that reruns
# compare against the same peer; bump them deliberately.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PGSYNC_VERSION="${PGSYNC_VERSION:-7.3.0}"
MATPLOTLIB_VERSION="${MATPLOTLIB_VERSION:-3.11.2}"

log() { printf '[bench/pgsync] %s\n' "$*" >&2; }

if ! command -v redis-server >/dev/null; then
	log "installing redis-server (Debian package)"
	if [[ "$(id -u)" == 0 ]]; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
	else
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
	fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
	log "creating $VENV"
	python3 -m venv "$VENV"
fi
want="pgsync==$PGSYNC_VERSION matplotlib==$MATPLOTLIB_VERSION"
if ! "$VENV/bin/python" - "$PGSYNC_VERSION" "$MATPLOTLIB_VERSION" <<'PY' 2>/dev/null; then
import importlib.metadata as m, sys
assert m.version("pgsync") == sys.argv[1] and m.version("matplotlib") == sys.argv[2]
PY
	log "installing $want from PyPI"
	"$VENV/bin/pip" install -q $want
fi
log "ready: PGSync $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pgsync"))'), $(redis-server --version | grep -o 'v=[^ ]*')"
