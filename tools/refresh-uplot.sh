#!/usr/bin/env bash
# Refreshes uPlot's built files in the console (src/Taihu.Console/wwwroot/lib/uplot) from npm. Run by hand when
# the version changes; the build never runs npm, so a fresh clone builds with the .NET SDK alone.
set -euo pipefail
version="${1:-1.6.32}"
cd "$(dirname "$0")/.."
target=src/Taihu.Console/wwwroot/lib/uplot
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$version" >/dev/null && tar xzf "uplot-$version.tgz")
mkdir -p "$target"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$work/package/LICENSE" "$target/"
echo "$version" > "$target/VERSION"
echo "uPlot $version copied to $target"
