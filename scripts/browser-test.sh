#!/usr/bin/env bash
# The browser suite: happn-rs' own browser client (clients/browser) in headless Chromium, driven
# by Playwright (tests/browser), against the release binary. Installs what it needs: Debian's
# chromium (apt, when /usr/bin/chromium is missing), and the npm packages of clients/browser
# (esbuild + @noble, to check the committed bundles), tests/browser (playwright-core) and
# tests/compat (the original happn 2.21 crypto the byte-compatibility test compares with).
# Screenshots land in $CARGO_TARGET_DIR/browser/ (default target/browser/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
export CARGO_TARGET_DIR=$target
export HAPPN_RS_BIN=${HAPPN_RS_BIN:-$target/release/happn-rs}

if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
  echo "== installing chromium (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
if [ ! -x "$HAPPN_RS_BIN" ]; then
  echo "== cargo build --release -p happn-rs"
  cargo build --release -p happn-rs --locked
fi
for dir in clients/browser tests/browser tests/compat; do
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
done
echo "== browser suite (Chromium $("${CHROMIUM_BIN:-/usr/bin/chromium}" --version 2>/dev/null | awk '{print $2}'))"
cd tests/browser
exec npm test
