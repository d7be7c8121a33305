#!/bin/bash
# Instructions per proxied request on the hot path (callgrind; deterministic, unlike timings on a busy box).
#
#     loadtest/icount.sh [CONFIG] [hotpath.py flags...]     e.g. loadtest/icount.sh plain --access-log /dev/null --tracing
#                                                                loadtest/icount.sh full --sockets
#
# Runs loadtest/hotpath.py under valgrind --tool=callgrind for two request counts and prints the difference
# divided by the difference of the counts, so start-up and warm-up cancel out. PYTHON overrides the interpreter.
# CACHE=1 adds callgrind's cache model and prints, beside the instructions, the data reads and writes and the
# simulated first-level misses (instruction fetch, data read, data write) per request: what the instructions
# cannot show, the memory traffic of more code and more objects touched per request. H2=1 counts one proxied
# HTTP/2 stream instead (loadtest/hotpath_h2.py, the h2 library's share included). KEEP=PREFIX keeps the two
# callgrind outputs as PREFIX.1 and PREFIX.2, for loadtest/callgrind_diff.py (the cost per request by function).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$(command -v python3)}
[ -x /work/venv/bin/python ] && [ -z "${PYTHON:-}" ] && py=/work/venv/bin/python
cfg=${1:-plain}; shift || true
n1=${N1:-500}; n2=${N2:-1500}
sim=(); [ "${CACHE:-0}" = "1" ] && sim=(--cache-sim=yes)
script=hotpath.py unit=request; [ "${H2:-0}" = "1" ] && script=hotpath_h2.py unit=stream
count() {          # count RUN hotpath-flags...
    local run=$1 out; shift
    if [ -n "${KEEP:-}" ]; then out="$KEEP.$run"; else out=$(mktemp); fi
    valgrind --tool=callgrind "${sim[@]}" --callgrind-out-file="$out" "$py" "$here/$script" "$cfg" "$@" 2>&1 \
        | grep -oE "Collected : [0-9 ]+" | cut -d: -f2
    [ -n "${KEEP:-}" ] || rm -f "$out"
}
a=($(count 1 "$@" --requests "$n1")); b=($(count 2 "$@" --requests "$n2"))
per() { echo $(( (b[$1] - a[$1]) / (n2 - n1) )); }
if [ ${#a[@]} -gt 1 ]; then      # Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
    echo "$cfg $*: $(per 0) instructions/$unit, reads $(per 1), writes $(per 2); first-level misses:" \
         "instructions $(per 3), data reads $(per 4), data writes $(per 5)"
else
    echo "$cfg $*: $(per 0) instructions/$unit"
fi
[ -z "${KEEP:-}" ] || echo "kept $KEEP.1 $KEEP.2: python $here/callgrind_diff.py $KEEP.1 $KEEP.2 --requests $((n2 - n1))"
