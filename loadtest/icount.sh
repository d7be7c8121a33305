#!/bin/bash
# Instructions per proxied request on the hot path (callgrind; deterministic, unlike timings on a busy box).
#
#     loadtest/icount.sh [CONFIG] [hotpath.py flags...]     e.g. loadtest/icount.sh plain --access-log /dev/null --tracing
#
# Runs loadtest/hotpath.py under valgrind --tool=callgrind for two request counts and prints the difference
# divided by the difference of the counts, so start-up and warm-up cancel out. PYTHON overrides the interpreter.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$(command -v python3)}
[ -x /work/venv/bin/python ] && [ -z "${PYTHON:-}" ] && py=/work/venv/bin/python
cfg=${1:-plain}; shift || true
n1=${N1:-500}; n2=${N2:-1500}
count() {
    local out; out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out" "$py" "$here/hotpath.py" "$cfg" "$@" 2>&1 \
        | grep -oE "Collected : [0-9]+" | awk '{print $3}'
    rm -f "$out"
}
a=$(count "$@" --requests "$n1"); b=$(count "$@" --requests "$n2")
echo "$cfg $*: $(( (b - a) / (n2 - n1) )) instructions/request"
