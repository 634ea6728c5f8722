#!/usr/bin/env bash
# The TUF conformance figures of docs/update.md: the public tuf-conformance suite
# (github.com/theupdateframework/tuf-conformance, not vendored here) run against
# limpet-tuf-client.
#
# Usage: benches/tuf-conformance.sh [ecdsa|ed25519] [PYTEST ARGS...]
#   SUITE=git URL or directory of the suite (default: the local mirror
#         /work/.mirror/theupdateframework+tuf-conformance/repo), cloned into a temporary
#         directory; SUITE_REV=commit to check out (default: its HEAD).
#   VENV=a Python virtualenv that has the suite's pinned dependencies (securesystemslib,
#        tuf, pytest, pytest-json-report from its pyproject.toml); made in the temporary
#        directory with pip when not given.
#   CLIENT=path/to/limpet-tuf-client (default: target/debug/limpet-tuf-client, built with
#          `cargo build -p limpet-tuf --bin limpet-tuf-client`).
#
# `ecdsa` (the default) runs the suite as published: its simulator signs with ECDSA P-256
# unless a test asks for another key type. `ed25519` first changes that default key type
# (the keytype/scheme defaults of RepositorySimulator.new_signer) to Ed25519, so the tests
# that are not about key types exercise the rest of the client. Prints pytest's summary
# (every failing test by name) and leaves nothing behind.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KEYTYPE="${1:-ecdsa}"
[ $# -gt 0 ] && shift
SUITE="${SUITE:-/work/.mirror/theupdateframework+tuf-conformance/repo}"
CLIENT="${CLIENT:-$ROOT/target/debug/limpet-tuf-client}"
[ -x "$CLIENT" ] || { echo "tuf-conformance.sh: build $CLIENT first" >&2; exit 2; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
git clone -q "$SUITE" "$TMP/suite"
[ -n "${SUITE_REV:-}" ] && git -C "$TMP/suite" checkout -q "$SUITE_REV"
echo "tuf-conformance $(git -C "$TMP/suite" rev-parse --short HEAD), default key type $KEYTYPE"
case "$KEYTYPE" in
  ecdsa) ;;
  ed25519)
    sed -i 's/keytype: str = "ecdsa", scheme: str = "ecdsa-sha2-nistp256"/keytype: str = "ed25519", scheme: str = "ed25519"/' \
      "$TMP/suite/tuf_conformance/_internal/repository_simulator.py"
    grep -q 'keytype: str = "ed25519", scheme: str = "ed25519"' \
      "$TMP/suite/tuf_conformance/_internal/repository_simulator.py" ||
      { echo "tuf-conformance.sh: the simulator's default key type was not found" >&2; exit 2; } ;;
  *) echo "tuf-conformance.sh: key type is ecdsa or ed25519" >&2; exit 2 ;;
esac
if [ -z "${VENV:-}" ]; then
  VENV="$TMP/venv"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "$TMP/suite"
fi
cd "$TMP/suite"
"$VENV/bin/pytest" tuf_conformance --entrypoint "$CLIENT" -q -p no:cacheprovider -rf "$@" |
  grep -E '^(FAILED|ERROR)|passed|failed' || true
