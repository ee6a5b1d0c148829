#!/usr/bin/env bash
# gen.sh regenerates the Go code for the protos in proto/ into gen/.
#
# It needs only Go: the code generators and buf (which compiles protos
# without protoc) are installed with "go install" at the pinned versions
# below into .tools/bin, and reinstalled only when a version changes. buf then
# lints the protos with its default rules and generates the code.
#
# Usage: scripts/gen.sh [OUTDIR]
#
# OUTDIR (default: the repository root) is the directory gen/ is written
# under; scripts/check-gen.sh passes a temporary one.
set -euo pipefail

# Pinned tool versions. protoc-gen-go ships with the protobuf runtime, so keep
# it at the google.golang.org/protobuf version in go.mod.
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
BUF_VERSION=v1.75.0

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-$root}
tools=$root/.tools/bin

# install PKG VERSION puts PKG's binary into .tools/bin unless the binary there
# was already built from that version.
install() {
	local pkg=$1 version=$2 bin
	bin=$tools/$(basename "$pkg")
	if [[ -x $bin ]] && go version -m "$bin" 2>/dev/null |
		awk '$1 == "mod" { print $3 }' | grep -qx "$version"; then
		return
	fi
	echo "gen.sh: installing $pkg@$version" >&2
	GOBIN=$tools go install "$pkg@$version"
}

install google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
install github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"

"$tools/buf" lint
"$tools/buf" generate --output "$out"
