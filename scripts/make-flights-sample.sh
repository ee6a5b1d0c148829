#!/bin/sh
# Cuts testdata/flights-sample.csv.gz, the bundled replay demo input, from
# the full flights data: every row whose departure falls in the first week
# of 2001 (2001-01-01T00:00Z up to, not including, 2001-01-08T00:00Z), with
# the header, unchanged and in file order.
#
# Usage: scripts/make-flights-sample.sh [path/to/flights-3m.csv.gz]
# The default source is ../shared/data/flights-3m.csv.gz next to the
# repository. gzip -n leaves the name and time out of the header, so the
# output is byte-for-byte the same on every run.
set -eu

src=${1:-"$(dirname "$0")/../../shared/data/flights-3m.csv.gz"}
out="$(dirname "$0")/../testdata/flights-sample.csv.gz"

gzip -dc "$src" |
	awk -F, 'NR == 1 || ($1 >= "2001-01-01T" && $1 < "2001-01-08T")' |
	gzip -n -9 >"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out: $(gzip -dc "$out" | wc -l) lines, $(wc -c <"$out") bytes"
