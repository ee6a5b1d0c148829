#!/usr/bin/env bash
# check-gen.sh fails, printing a diff, when the generated code committed in
# gen/ differs from what scripts/gen.sh produces from proto/. Nothing in the
# working tree changes: the fresh code is generated into a temporary directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$root/scripts/gen.sh" "$tmp"
if ! diff -ru "$root/gen" "$tmp/gen"; then
	echo "check-gen.sh: gen/ is stale; run scripts/gen.sh and commit the result" >&2
	exit 1
fi
