#!/usr/bin/env bash
# Checks deploy/ with the tools that consume it: the Prometheus rules with
# promtool (syntax, then their unit tests), the systemd units with
# systemd-analyze verify. Needs a built `myc` (path as $1, default
# target/debug/myc): systemd-analyze refuses a unit whose ExecStart binary
# does not exist, so the units are verified in a scratch copy that points at
# the built binary instead of /usr/bin/myc. systemd-analyze only warns about
# unknown keys and bad values, so any output at all is a failure here.
set -euo pipefail
cd "$(dirname "$0")/.."
myc="$(realpath "${1:-target/debug/myc}")"
test -x "$myc" || { echo "error: no myc binary at $myc (build it first)"; exit 1; }

echo "== promtool check rules"
promtool check rules deploy/prometheus/myc-rules.yml
echo "== promtool test rules"
(cd deploy/prometheus && promtool test rules myc-rules.test.yml)

echo "== systemd-analyze verify"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
units=()
for unit in deploy/systemd/*.service; do
  name="$(basename "$unit")"
  sed "s#/usr/bin/myc#$myc#g" "$unit" > "$scratch/$name"
  # A template is verified through one instance of it.
  if [[ "$name" == *@.service ]]; then
    mv "$scratch/$name" "$scratch/${name%@.service}@example.service"
    name="${name%@.service}@example.service"
  fi
  units+=("$name")
done
output="$(cd "$scratch" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify "${units[@]}" 2>&1)" || { echo "$output"; exit 1; }
if [[ -n "$output" ]]; then
  echo "$output"
  echo "error: systemd-analyze found problems in deploy/systemd"
  exit 1
fi
echo "${#units[@]} units verified"
