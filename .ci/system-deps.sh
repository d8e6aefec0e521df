#!/usr/bin/env bash
# Installs the Debian tools that tests and benches drive for real, only when missing.
# Needs root (CI and the dev machines run as root); otherwise prints what is missing
# and the tests that need them fail naming what is missing (tests/prereq.py).
set -uo pipefail
want=()
command -v curl >/dev/null || want+=(curl)
command -v aria2c >/dev/null || want+=(aria2)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || want+=(nginx-light)
command -v xdelta3 >/dev/null || want+=(xdelta3)
command -v zstd >/dev/null || want+=(zstd)
command -v minisign >/dev/null || want+=(minisign)
command -v ip >/dev/null || want+=(iproute2)
command -v squid >/dev/null || [ -x /usr/sbin/squid ] || want+=(squid)  # geo: mirror behind a proxy
command -v wrk >/dev/null || want+=(wrk)
command -v faketime >/dev/null || want+=(faketime)
command -v gpg >/dev/null || want+=(gnupg)  # ecosystem: an operator-signed apt Release
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || want+=(nftables)  # discovery: firewall rules in namespaces
command -v gcc >/dev/null || want+=(gcc)  # patches: the ELF tests build two versions of a library
# simulate --native (mypyc) compiles against the interpreter's headers: a Debian python3
# has them in python3-dev (pyenv and python.org builds ship their own).
"${PYTHON:-python3}" -c 'import os, sysconfig; raise SystemExit(not os.path.exists(
    os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null || want+=(python3-dev)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "system-deps: not root, cannot install: ${want[*]} (tests needing them will fail)" >&2
    exit 0
fi
echo "system-deps: installing ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null 2>&1 || \
    echo "system-deps: apt-get install failed for some of: ${want[*]}" >&2
exit 0
