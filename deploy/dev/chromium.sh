#!/usr/bin/env bash
# Makes a headless Chromium available for the browser tests of `flusso design`
# (internal/design): prints the path of the binary, installing the Debian
# package `chromium` with apt-get when it is missing and we run as root.
set -euo pipefail

for b in chromium chromium-browser google-chrome; do
	if p="$(command -v "$b")"; then
		echo "$p"
		exit 0
	fi
done
if [[ "$(id -u)" != 0 ]]; then
	echo "chromium is not installed: run 'sudo apt-get install -y chromium' and retry" >&2
	exit 1
fi
echo "installing chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale package list would name versions the mirror no longer has.
apt-get install -y -q --no-install-recommends chromium >&2 ||
	{ apt-get update -q >&2 && apt-get install -y -q --no-install-recommends chromium >&2; } ||
	{ echo "apt-get install chromium failed" >&2; exit 1; }
command -v chromium
