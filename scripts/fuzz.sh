#!/usr/bin/env bash
# Runs every cargo-fuzz target for the given time each (default 600 s),
# two at a time, keeping corpora in fuzz/corpus/<target> and crashes in
# fuzz/artifacts/<target>. Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# A crash makes the script exit 1; add its input as a regression test.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(codec_decode broker_frame relay_stream pcapng_reader feed_frames config_parse)
fi
cargo +nightly fuzz build -O >/dev/null
status=0
run() {
  mkdir -p "corpus/$1" "artifacts/$1"
  if cargo +nightly fuzz run -O "$1" "corpus/$1" -- -max_total_time="$seconds" \
       -artifact_prefix="artifacts/$1/" -print_final_stats=1 >"fuzz-$1.log" 2>&1; then
    echo "$1: ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "fuzz-$1.log" | tail -1 | cut -d' ' -f2) runs)"
  else
    echo "$1: CRASH, see fuzz/fuzz-$1.log and fuzz/artifacts/$1/"
    return 1
  fi
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  pids=()
  for target in "${targets[@]:i:2}"; do
    run "$target" & pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || status=1
  done
done
exit "$status"
