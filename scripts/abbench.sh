#!/usr/bin/env bash
# abbench.sh compares commits on one benchmark: it builds a package's test
# binary (PKG, default the root package) at each commit, runs them in turn,
# round after round, so that a noisy machine weighs on every commit alike,
# and summarises the rounds with benchstat.
#
# Usage: [PKG=./grpcserver] scripts/abbench.sh NAME PATTERN COUNT COMMIT...
#
#   scripts/abbench.sh layout \
#     'Ingest$/^entities=100000$/^features=10$/^batch=512$/^shards=2$' 6 a2878e4 HEAD
#
# writes docs/bench/NAME.txt (each round's output, labelled by commit) and
# docs/bench/NAME.benchstat (the commits side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 4 ]; then
	sed -n 2,14p "$0" >&2
	exit 2
fi
name=$1 pattern=$2 count=$3 pkg=${PKG:-.}
shift 3
scripts/tools.sh benchstat

work=$(mktemp -d)
trap 'git worktree remove --force "$work/tree" 2>/dev/null || true; rm -rf "$work"' EXIT
revs=()
for rev in "$@"; do
	short=$(git rev-parse --short "$rev")
	git worktree add --quiet --detach "$work/tree" "$rev"
	(cd "$work/tree" && go test -c -o "$work/$short.test" "$pkg")
	git worktree remove --force "$work/tree"
	revs+=("$short")
done

out=docs/bench
mkdir -p "$out"
: >"$out/$name.txt"
for round in $(seq "$count"); do
	for short in "${revs[@]}"; do
		echo "abbench.sh: round $round, $short" >&2
		"$work/$short.test" -test.run '^$' -test.bench "$pattern" -test.benchtime 2s |
			tee "$work/$short.txt.$round" >&2
		cat "$work/$short.txt.$round" >>"$work/$short.txt"
	done
done
args=()
for short in "${revs[@]}"; do
	{ echo "commit: $short"; cat "$work/$short.txt"; } >>"$out/$name.txt"
	cp "$work/$short.txt" "$work/$short"
	args+=("$short=$work/$short")
done
.tools/bin/benchstat "${args[@]}" | sed "s|$work/||g" >"$out/$name.benchstat"
cat "$out/$name.benchstat"
