#!/usr/bin/env bash
# "Kernel audit" of BENCHMARKS.md and docs/kernel.md: one table row per kernel config, from
# `limpet check --kernel-config F --json` against examples/hello and examples/contain.
#
# Usage: benches/kernel-audit.sh [LABEL=]CONFIG...
#   LIMPET=path/to/limpet (default: target/debug/limpet, built with `cargo build -p limpet`)
#
# A full .config (Kconfig's "Automatically generated file" header) is audited as it is. Any
# other file is taken as a config fragment (options set on top of a defconfig): its `=n`
# lines become `# CONFIG_X is not set`, and an option set twice keeps its last value, as
# scripts/kconfig/merge_config.sh does. Its row is marked "(fragment)": an option the
# fragment does not mention counts as off, although the kernel built from it may have it on
# by default, so a fragment's figures say what it sets, not what its kernel has.
#
# The configs of BENCHMARKS.md ("Kernel audit"), none of them kept in this repository:
#   Debian 6.1:  /boot/config-6.1.0-57-amd64 (linux-image-6.1.0-57-amd64, the CI machine's)
#   Talos:       github.com/siderolabs/pkgs, kernel/build/config-amd64 (a full .config,
#                Linux 6.18.45) at commit 28f5f23ccf05ac8633e9f85146e47f27bbbae99f:
#                  git clone https://github.com/siderolabs/pkgs && cd pkgs &&
#                  git show 28f5f23ccf05ac8633e9f85146e47f27bbbae99f:kernel/build/config-amd64 > talos.config
#   gokrazy:     github.com/gokrazy/kernel.amd64, _build/config.addendum.txt (a fragment that
#                gokr-rebuild-kernel applies on top of Linux 6.19.9's x86_64 defconfig) at
#                commit 5307dd0afb5faa06924aac94226fbbe01e473c6f, likewise with git show.
#   Bottlerocket: github.com/bottlerocket-os/bottlerocket-kernel-kit,
#                packages/kernel-6.1/config-bottlerocket (a fragment that kernel-6.1.spec merges
#                with merge_config.sh on top of Amazon Linux 2023's config from its source RPM)
#                at commit 2f501629a9883fbabcaf0fe4827a4aa9aa4d350b, likewise with git show.
# Example:
#   benches/kernel-audit.sh "Debian 6.1=/boot/config-6.1.0-57-amd64" "Talos=talos.config" \
#     "gokrazy=config.addendum.txt" "Bottlerocket=config-bottlerocket"
# A full config's row names the options a manifest needs and it lacks; a fragment's does not
# (most of what it "lacks" is only left to the defconfig under it).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)" # the examples' manifests are here; paths stay as given
LIMPET="${LIMPET:-$ROOT/target/debug/limpet}"
[ $# -gt 0 ] || { sed -n '5,6p' "$0" >&2; exit 2; }
command -v jq >/dev/null || { echo "kernel-audit.sh: needs jq" >&2; exit 2; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# audit CONFIG MANIFEST: the JSON report. `limpet check` exits 1 when a need is missing and
# still prints the report; any other failure (or no report) stops the script.
audit() {
  local rc=0
  "$LIMPET" check --kernel-config "$1" --manifest "$2" --json >"$TMP/out.json" 2>"$TMP/err" || rc=$?
  if [ "$rc" -gt 1 ] || ! jq -e .options_on "$TMP/out.json" >/dev/null 2>&1; then
    echo "kernel-audit.sh: limpet check failed on $1 (exit $rc):" >&2
    cat "$TMP/err" >&2
    exit 1
  fi
  cat "$TMP/out.json"
}

# passed/failed of the hardening checks from one source, as "P / F"
by_source='def src($s): [.hardening[] | select(.check.source == $s)]
  | "\(map(select(.passed)) | length) / \(map(select(.passed | not)) | length)";'

for arg in "$@"; do
  [ -r "${arg#*=}" ] || { echo "kernel-audit.sh: cannot read ${arg#*=}" >&2; exit 1; }
done
echo "| kernel | arch | options on | KSPP passed / failed | kernel docs passed / failed | Limpet passed / failed | attack-surface options on | needs of hello met | needs of contain met |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for arg in "$@"; do
  label="${arg%%=*}"; file="${arg#*=}"
  [ "$label" != "$arg" ] || label="$(basename "$file")"
  if grep -q '^# Automatically generated file; DO NOT EDIT' "$file"; then
    cfg="$file"; fragment=0
  else
    label="$label (fragment)"; fragment=1
    # a fragment holds only comments, blank lines and CONFIG_X=... lines
    if bad="$(grep -n -v -E '^[[:space:]]*(#.*)?$|^CONFIG_[A-Za-z0-9_]+=' "$file")"; then
      echo "kernel-audit.sh: $file is neither a .config nor a config fragment:" >&2
      head -3 <<<"$bad" >&2
      exit 1
    fi
    cfg="$TMP/fragment.config"
    # =n to "is not set"; then keep each option's last line only (merge_config.sh's rule)
    sed -E 's/^(CONFIG_[A-Za-z0-9_]+)=n[[:space:]]*$/# \1 is not set/' "$file" \
      | awk 'match($0, /^CONFIG_[A-Za-z0-9_]+=/) { o = substr($0, 1, RLENGTH - 1) }
             match($0, /^# CONFIG_[A-Za-z0-9_]+ is not set/) { o = substr($0, 3); sub(/ .*/, "", o) }
             !/^CONFIG_|^# CONFIG_[A-Za-z0-9_]+ is not set/ { next }
             { last[o] = $0; if (!(o in seen)) { seen[o] = 1; order[++n] = o } }
             END { for (i = 1; i <= n; i++) print last[order[i]] }' >"$cfg"
  fi
  hello="$(audit "$cfg" "$ROOT/examples/hello/limpet.toml")"
  contain="$(audit "$cfg" "$ROOT/examples/contain/limpet.toml")"
  row="$(jq -r --arg name "$label" "$by_source"'
    "| \($name) | \(.arch // "not set") | \(.options_on) | \(src("kspp")) | \(src("kernel_docs")) | \(src("limpet")) | \([.attack_surface[] | select(.passed | not)] | length) of \(.attack_surface | length) |"' <<<"$hello")"
  needs='"\([.needs[] | select(.passed)] | length) of \(.needs | length)"'
  missing='[.needs[] | select(.passed | not) | .check.option] | if length > 0 then " (lacks " + join(", ") + ")" else "" end'
  [ "$fragment" = 0 ] || missing='""'
  echo "$row $(jq -r "$needs + ($missing)" <<<"$hello") | $(jq -r "$needs + ($missing)" <<<"$contain") |"
done
