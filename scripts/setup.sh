#!/usr/bin/env bash
# Installs everything augur needs on a fresh Debian machine, idempotently:
#   - Debian packages: protoc (tonic + etcd-client build scripts), make + g++ + zlib1g-dev
#     (rdkafka-sys builds librdkafka from source), redis-server and
#     etcd-server (tests start their own servers), Go with the etcd and gRPC-Go sources (the Go
#     resolver test builds examples/go/ offline), prometheus (only for `promtool` in
#     scripts/test.sh; ~96 MB installed), docker-compose (only to parse docker-compose.yml).
#   - A project-local Python venv (.venv, git-ignored) with the pinned onnxruntime wheel, whose
#     libonnxruntime.so augur loads at run time (ort `load-dynamic`), plus numpy/onnx for tools/train,
#     and the Python client (clients/python, `augur_client`) installed editable, with its test pins.
# Nothing is installed globally for Python; nothing is downloaded outside the package registries.
#
# `setup.sh --demo` (scripts/demo.sh) installs only what building and running augur needs:
# protoc, the C toolchain librdkafka builds with, and the onnxruntime wheel; none of the test
# servers, Go, Prometheus or docker-compose.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=false
[ "${1:-}" = "--demo" ] && demo=true

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# rdkafka-sys builds the bundled librdkafka with its own `configure && make` (its configure
# requires a C++ compiler too) and links zlib (rdkafka feature `libz`).
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
if ! $demo; then
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
# The TLS test makes its throwaway CA and certificates with the openssl CLI.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# The front-door test sends requests with curl's HTTP/2 client, as a user would.
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# etcd 3.4 (/usr/bin/etcd): the registry tests start it on free ports with a temp data dir.
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
# Go 1.19 + the etcd 3.4 and gRPC-Go sources: tests build examples/go/ offline in GOPATH mode.
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
[ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3/naming/resolver ] || need_apt+=(golang-etcd-server-dev)
[ -d /usr/share/gocode/src/google.golang.org/grpc/health ] || need_apt+=(golang-google-grpc-dev)
# protoc-gen-go 1.3 (plugins=grpc) + its runtime: tests generate examples/go/predict's augur.v1
# stubs. Not Debian's protoc-gen-go 1.28 package: it conflicts with these and removes the etcd sources.
command -v protoc-gen-go >/dev/null 2>&1 || need_apt+=(golang-goprotobuf-dev)
[ -d /usr/share/gocode/src/github.com/golang/protobuf/proto ] || need_apt+=(golang-github-golang-protobuf-1-3-dev)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# docker-compose 1.29 (Python): scripts/test.sh parses docker-compose.yml with `config`, which
# needs no Docker engine. Without recommends: they would pull in docker.io and containerd.
if ! $demo && ! command -v docker-compose >/dev/null 2>&1; then
  echo "setup: installing Debian package docker-compose"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  if ! "$PY" -m venv .venv; then
    # Debian's own python3 ships venv support separately.
    rm -rf .venv
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv .venv
  fi
fi
if $demo; then
  # The onnxruntime wheel only, at the pin the tests use (the library augur loads).
  if ! ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* >/dev/null 2>&1; then
    echo "setup: installing onnxruntime into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "$(grep -E '^onnxruntime==' tools/train/requirements.txt)"
  fi
fi
stamp=.venv/.requirements.sha
want=$(sha256sum tools/train/requirements.txt | cut -d' ' -f1)
if ! $demo && { [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; }; then
  echo "setup: installing tools/train/requirements.txt into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r tools/train/requirements.txt
  echo "$want" >"$stamp"
fi
# augur_client, editable: tools/train and scripts/loop.sh import it; edits to its code need no
# reinstall, a changed pyproject.toml does. Its dependencies are the pins above.
stamp=.venv/.augur-client.sha
want=$(sha256sum clients/python/pyproject.toml | cut -d' ' -f1)
if ! $demo && { [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import augur_client' 2>/dev/null; }; then
  echo "setup: installing clients/python (augur_client) into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e clients/python
  echo "$want" >"$stamp"
fi

lib=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 || true)
if [ -z "$lib" ]; then
  echo "setup: libonnxruntime.so not found in .venv after install" >&2
  exit 1
fi
echo "setup: ok (onnxruntime library: $lib)"
