#!/usr/bin/env bash
# tools.sh installs the project's development tools at pinned versions into
# ./.tools/bin, building each only when its version changed. Go is the only
# prerequisite. Usage: scripts/tools.sh [TOOL...]  (default: all of them)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"

declare -A pkg=(
	[staticcheck]=honnef.co/go/tools/cmd/staticcheck@v0.8.2
	[benchstat]=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
)

install() {
	local name=$1 spec=${pkg[$1]:?unknown tool $1}
	local stamp="$bin/.$name.version"
	if [ -x "$bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$spec" ]; then
		return
	fi
	echo "tools.sh: installing $spec" >&2
	GOBIN="$bin" go install "$spec"
	echo "$spec" >"$stamp"
}

if [ $# -eq 0 ]; then
	set -- "${!pkg[@]}"
fi
for t in "$@"; do
	install "$t"
done
