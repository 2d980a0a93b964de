#!/usr/bin/env bash
# Builds the third-party proxies the benchmarks compare tailgate with, into a cache outside the repository:
#   gost    gost v3, the baseline. Its sources are not in this repository: they come with their own offline build
#           script, found through TAILGATE_GOST_SOURCE (default: <repo>/../shared/gost, holding build.sh), which
#           builds into ${TAILGATE_TOOLS_DIR:-~/.cache/tailgate-tools}/gost-<version>/gost (~90 s, once).
#   glider  a second Go baseline (HTTP + SOCKS5 server with user auth chaining to an upstream HTTP proxy),
#           pinned, fetched through the Go module proxy. See bench/README.md.
#
# Also builds the benchmarks' device-side stand-in (bench/device/main.go, standard library only).
#
# Usage: scripts/bench-tools.sh gost|glider|device
# Prints the path of the built binary on stdout (last line). Idempotent: a cached binary is reused.
set -euo pipefail

what="${1:-glider}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

GLIDER_MODULE=github.com/nadoo/glider
GLIDER_VERSION=v0.16.4
TOOLS_DIR="${TAILGATE_TOOLS_DIR:-$HOME/.cache/tailgate-tools}"

if [[ "$what" == gost ]]; then
  src="${TAILGATE_GOST_SOURCE:-$REPO/../shared/gost}"
  if [[ ! -f "$src/build.sh" ]]; then
    echo "bench-tools: no gost build script at $src/build.sh: set TAILGATE_GOST_SOURCE to the directory holding gost's build.sh and src/" >&2
    exit 1
  fi
  # build.sh honours TAILGATE_TOOLS_DIR, does nothing when its binary exists and prints the binary's path last.
  bin="$(TAILGATE_TOOLS_DIR="$TOOLS_DIR" bash "$src/build.sh" | tail -n 1)"
  [[ -x "$bin" ]] || { echo "bench-tools: gost build.sh (TAILGATE_GOST_SOURCE=$src) printed '$bin', which is not an executable" >&2; exit 1; }
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "bench-tools: go is not installed (needed to build $what)" >&2; exit 1; }

if [[ "$what" == device ]]; then
  src="$REPO/bench/device/main.go"
  sum="$(sha256sum "$src" | cut -c1-12)"
  out="$TOOLS_DIR/bench-device-$sum"
  if [[ ! -x "$out/device" ]]; then
    mkdir -p "$out"
    # A single file with standard-library imports builds without a go.mod.
    (cd "$REPO/bench/device" && go build -trimpath -o "$out/device" main.go) >&2
  fi
  echo "$out/device"
  exit 0
fi
[[ "$what" == glider ]] || { echo "usage: $0 gost|glider|device" >&2; exit 2; }
OUT_DIR="$TOOLS_DIR/glider-$GLIDER_VERSION"
BIN="$OUT_DIR/glider"

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$OUT_DIR"

# `go install pkg@version` first; if the deprecation/latest check is refused, build through a temporary
# module that pins the exact version.
if GOBIN="$OUT_DIR" go install "$GLIDER_MODULE@$GLIDER_VERSION" 2>"$OUT_DIR/install.log"; then
  :
else
  echo "bench-tools: go install failed ($(tail -1 "$OUT_DIR/install.log")), building via a temporary module" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    go mod init tailgate-bench-tools >&2
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$GLIDER_MODULE" > tools.go
    go get "$GLIDER_MODULE@$GLIDER_VERSION" >&2
    go mod tidy >&2
    go build -trimpath -o "$BIN" "$GLIDER_MODULE" >&2
  )
fi
[[ -x "$BIN" ]] || { echo "bench-tools: build produced no binary at $BIN" >&2; exit 1; }
echo "$GLIDER_VERSION" > "$OUT_DIR/VERSION"
echo "$BIN"
