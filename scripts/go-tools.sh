#!/usr/bin/env bash
# Builds the pinned headscale and tailscale binaries the tailnet end-to-end test runs, into a cache outside
# the repository, and skips whatever is already there. Prints shell lines to eval:
#   eval "$(scripts/go-tools.sh)"   # sets HEADSCALE_BIN, TAILSCALE_BIN, TAILSCALED_BIN
#
# Versions: headscale v0.29.3 (newest the module proxy serves); tailscale v1.102.5 (v1.104 needs a newer Go
# than the machines have; headscale 0.29 accepts clients >= 1.80).
set -euo pipefail

HEADSCALE_VERSION="${HEADSCALE_VERSION:-v0.29.3}"
TAILSCALE_VERSION="${TAILSCALE_VERSION:-v1.102.5}"
TOOLS_DIR="${TAILGATE_TOOLS_DIR:-$HOME/.cache/tailgate-tools}"

mkdir -p "$TOOLS_DIR"
# Test files running in parallel may all ask at once on a cold cache: one builds, the others wait for it.
exec 9>"$TOOLS_DIR/.lock"
flock 9

hs_dir="$TOOLS_DIR/headscale-$HEADSCALE_VERSION"
ts_dir="$TOOLS_DIR/tailscale-$TAILSCALE_VERSION"

need_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "go-tools.sh: 'go' is not on PATH; it is needed once to build headscale $HEADSCALE_VERSION and tailscale $TAILSCALE_VERSION into $TOOLS_DIR (install Go >= 1.26, or put prebuilt binaries there)" >&2
    exit 1
  fi
}

if [[ ! -x "$hs_dir/headscale" ]]; then
  need_go
  echo "go-tools.sh: building headscale $HEADSCALE_VERSION into $hs_dir (first run only)" >&2
  # `go install …@version` asks the module proxy for the version list (deprecation check), which the proxy
  # here refuses; building from a throw-away module that requires the exact version avoids that request.
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$hs_dir"
  (
    cd "$work"
    go mod init tailgate.local/tools >/dev/null 2>&1
    cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "github.com/juanfont/headscale/cmd/headscale"
EOF
    go get "github.com/juanfont/headscale@$HEADSCALE_VERSION" >&2
    go mod tidy >&2
    go build -o "$hs_dir/headscale.tmp" github.com/juanfont/headscale/cmd/headscale >&2
  )
  mv "$hs_dir/headscale.tmp" "$hs_dir/headscale"
  rm -rf "$work"
  trap - EXIT
fi

if [[ ! -x "$ts_dir/tailscale" || ! -x "$ts_dir/tailscaled" ]]; then
  need_go
  echo "go-tools.sh: building tailscale $TAILSCALE_VERSION into $ts_dir (first run only)" >&2
  mkdir -p "$ts_dir"
  GOBIN="$ts_dir" go install "tailscale.com/cmd/tailscale@$TAILSCALE_VERSION" "tailscale.com/cmd/tailscaled@$TAILSCALE_VERSION" >&2
fi

echo "HEADSCALE_BIN=$hs_dir/headscale"
echo "TAILSCALE_BIN=$ts_dir/tailscale"
echo "TAILSCALED_BIN=$ts_dir/tailscaled"
