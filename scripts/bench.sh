#!/usr/bin/env bash
# bench.sh reruns the benchmarks behind docs/PERFORMANCE.md, writes their raw
# output and benchstat summaries to docs/bench/, and redraws the memory plot.
#
# Usage: scripts/bench.sh [COUNT]   (default 6 rounds of each benchmark)
#
# BENCH names the sets to run (default: all the figures the document quotes);
# BENCH=. runs every benchmark, including the full BenchmarkIngest matrix,
# which takes an hour or more at COUNT=6.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-6}
out=docs/bench
mkdir -p "$out"
scripts/tools.sh benchstat

run() { # name regexp [package [go test flags]]
	local name=$1 re=$2 pkg=${3:-.}
	shift $(($# < 3 ? $# : 3))
	echo "bench.sh: $name ($re) x$count" >&2
	go test -run '^$' -bench "$re" -count "$count" -timeout 3h "$@" "$pkg" | tee "$out/$name.txt" >&2
	.tools/bin/benchstat "$out/$name.txt" >"$out/$name.benchstat"
}

if [ "${BENCH:-}" = "." ]; then
	run all . ./...
	exit 0
fi

# BENCH may also name sets from the list below, e.g. BENCH="query memory".
for set in ${BENCH:-ingest ingest-1e6 ingest-long ingest-target roofline parallel query query-cpu index grpc memory}; do
	case $set in
	# Each level of a -bench pattern matches anywhere in its part of the
	# name, so the levels are anchored: entities=1000 must not match 1000000.
	ingest) run ingest 'Ingest$/^entities=(1000|100000)$/^features=(1|10)$/^batch=(1|64|512)$/^shards=(1|2)$' ;;
	ingest-1e6) run ingest-1e6 'Ingest$/^entities=1000000$/^features=10$/^batch=512$/^shards=2$' ;;
	# The target case, and one event per queue message beside it.
	ingest-target) run ingest-target 'Ingest$/^entities=100000$/^features=10$/^batch=(1|512)$/^shards=2$' ;;
	grpc) run grpc 'GRPCIngest' ./grpcserver ;;
	roofline) run roofline 'Roofline' ;;
	parallel) run parallel 'IngestParallel' ;;
	query) run query 'Stats|Drift|IdleSpin' ;;
	# The same queries with GOMAXPROCS 1 and 2 side by side: with one P
	# no hand-off has to wake a goroutine on the other CPU.
	query-cpu) run query-cpu 'Stats|Drift|IdleSpin' . -cpu=1,2 ;;
	index) run index 'EntityIndex' ;;
	# The one case whose allocs/op is not 0 at the default benchtime, run
	# six times longer: what is left of the warm-up amortises away.
	ingest-long) run ingest-long 'Ingest$/^entities=1000$/^features=10$/^batch=512$/^shards=(1|2)$' . -benchtime=6s ;;
	memory)
		run memory 'Memory'
		go run ./scripts/benchplot -o docs/memory.svg "$out/memory.txt"
		;;
	*) echo "bench.sh: unknown set $set" >&2; exit 2 ;;
	esac
done
