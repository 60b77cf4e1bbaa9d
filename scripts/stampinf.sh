#!/usr/bin/env bash
# Stamps an .inx into an .inf the way the WDK's stampinf does for PortWatch:
# sets DriverVer in [Version] to "MM/DD/YYYY,<version>" and replaces $ARCH$.
# The date is SOURCE_DATE_EPOCH's (UTC) when set, else today's, so a pinned
# epoch gives a reproducible INF. Output has CRLF line endings.
#
# usage: scripts/stampinf.sh <in.inx> <out.inf> <version a.b.c[.d]> [arch]
#   arch defaults to amd64 (the only architecture PortWatch is built for).
set -euo pipefail

if [[ $# -lt 3 || $# -gt 4 ]]; then
    echo "usage: $0 <in.inx> <out.inf> <version> [arch]" >&2
    exit 2
fi
inx=$1 inf=$2 version=$3 arch=${4:-amd64}

# DriverVer takes four dot-separated 16-bit numbers; a crate version has three.
if [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    version="$version.0"
fi
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    echo "stampinf: version '$version' is not a.b.c or a.b.c.d" >&2
    exit 2
fi
for part in ${version//./ }; do
    if (( 10#$part > 65535 )); then
        echo "stampinf: version part $part exceeds 65535" >&2
        exit 2
    fi
done
case $arch in amd64 | arm64 | x86) ;; *)
    echo "stampinf: unknown architecture '$arch'" >&2
    exit 2
    ;;
esac

date_args=(-u +%m/%d/%Y)
if [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then
    date_args=(-u -d "@$SOURCE_DATE_EPOCH" +%m/%d/%Y)
fi
driver_ver="$(date "${date_args[@]}"),$version"

# Replace DriverVer inside [Version] (insert it at the end of the section
# when absent); substitute $ARCH$ everywhere.
awk -v driver_ver="$driver_ver" -v arch="$arch" '
    function flush_version() {
        if (in_version && !stamped) { print "DriverVer   = " driver_ver; stamped = 1 }
    }
    { sub(/\r$/, "") }
    /^[ \t]*\[/ {
        flush_version()
        in_version = (tolower($0) ~ /^[ \t]*\[version\]/)
    }
    in_version && tolower($0) ~ /^[ \t]*driverver[ \t]*=/ {
        print "DriverVer   = " driver_ver; stamped = 1; next
    }
    { gsub(/\$ARCH\$/, arch); print }
    END { flush_version() }
' "$inx" | sed 's/$/\r/' >"$inf.tmp"

if grep -q '\$ARCH\$' "$inf.tmp" || ! grep -q '^DriverVer' "$inf.tmp"; then
    echo "stampinf: stamping $inx failed" >&2
    rm -f "$inf.tmp"
    exit 1
fi
mv "$inf.tmp" "$inf"
echo "stampinf: $inf (DriverVer $driver_ver, $arch)"
