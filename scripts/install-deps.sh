#!/usr/bin/env bash
# Installs the Debian 12 packages this project needs. Idempotent and quiet
# when everything is already there. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libcaf-dev
  libboost-json1.81-dev libboost1.81-dev
  libwebsockets-dev libev-dev libcurl4-openssl-dev
  libzmq3-dev cppzmq-dev
  libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc   # gRPC door and link (1.51, protobuf 3.21)
  libgtest-dev libgmock-dev
  libsqlite3-dev libssl-dev libsodium-dev
  libcli11-dev libncurses-dev
  clang-14 libclang-rt-14-dev
  tmux curl jq
  file dpkg-dev   # cpack DEB (scripts/package.sh, ctest consumer_packages)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
