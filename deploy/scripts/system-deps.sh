#!/usr/bin/env bash
# Installs the system packages envhub needs, when missing, with apt-get (root).
#   run:  git; bubblewrap (sandboxes local environments: without it they do not
#         start) and slirp4netns (their outbound network: without it they run offline)
#   test: chromium for the browser tests, gcc for the sandbox's LD_PRELOAD attack test,
#         postgresql (the server binaries: every test process starts a private server
#         from them, tests/support/postgres.py), redis-server (a private one per test
#         process, tests/support/redis_server.py)
set -euo pipefail
what="${1:-run}"
need=()
case "$what" in
  run)
    command -v git >/dev/null || need+=(git)
    command -v bwrap >/dev/null || need+=(bubblewrap)
    command -v slirp4netns >/dev/null || need+=(slirp4netns)
    command -v npm >/dev/null || need+=(npm)
    ;;
  test)
    command -v chromium >/dev/null || need+=(chromium)
    command -v gcc >/dev/null || need+=(gcc)
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
    command -v redis-server >/dev/null || need+=(redis-server)
    command -v setpriv >/dev/null || need+=(util-linux)
    ;;
esac
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "envhub: please install: ${need[*]}" >&2
  [ "$what" = test ] && exit 1
  exit 0   # envhub names what is missing again when an environment needs it
fi
echo "envhub: installing ${need[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
