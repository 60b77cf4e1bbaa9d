#!/usr/bin/env bash
# Builds the PortWatch driver package on Linux, in target/package/portwatch:
#   portwatch.sys       the test-signed driver
#   portwatch.inf       stamped from inf/portwatch.inx (DriverVer = the crate version)
#   portwatch.cat       the signed security catalog of the .inf and the .sys
#                       (tools/catalog writes it as Inf2Cat would, osslsigncode signs it)
#   portwatch.pdb       the linker's PDB of portwatch.sys (WinDbg symbols)
#   portwatch-test.cer  the test certificate (DER) that signed the .sys and the .cat
#   portwatch.exe       the Windows tool (install, verifier, stress, status)
#   README.txt          what to run on the test VM, in order
# The signing key is a throwaway self-signed code-signing certificate made
# here, kept under target/package/test-cert/ (never in the package, never
# committed). `cargo make package` on Windows gives the same file names.
#
# Installs what it needs when missing: the x86_64-pc-windows-msvc Rust
# target, osslsigncode and openssl (apt-get; sudo when not root).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

triple=x86_64-pc-windows-msvc
profile=driver
# Always the workspace's own target folder: the package has a fixed place.
target_dir="$root/target"
build_dir="$target_dir/$triple/$profile"
package_dir="$target_dir/package/portwatch"
cert_dir="$target_dir/package/test-cert"

log() { echo "package: $*"; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

ensure_rust_target() {
    if ! rustup target list --installed | grep -qx "$triple"; then
        log "installing Rust target $triple"
        rustup target add "$triple"
    fi
}

ensure_apt_tools() {
    local missing=()
    command -v osslsigncode >/dev/null || missing+=(osslsigncode)
    command -v openssl >/dev/null || missing+=(openssl)
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing ${missing[*]}"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

crate_version() {
    # "path+file:///…/driver/portwatch#0.1.0" or "…#portwatch@0.1.0"
    local id
    id=$(cargo pkgid -p portwatch)
    echo "${id##*[#@]}"
}

build_driver() {
    log "building portwatch.sys ($triple, profile $profile)"
    cargo build -p portwatch --target "$triple" --profile "$profile" --target-dir "$target_dir"
    test -f "$build_dir/portwatch.dll"
    test -f "$build_dir/portwatch.pdb"
}

build_catalog_tool() {
    log "building portwatch-catalog"
    cargo build -q -p portwatch-catalog --target-dir "$target_dir"
}

make_test_certificate() {
    # A fresh key and certificate per run: nothing here is meant to last.
    rm -rf "$cert_dir"
    mkdir -p "$cert_dir"
    openssl req -x509 -newkey rsa:3072 -sha256 -days 30 -nodes \
        -keyout "$cert_dir/key.pem" -out "$cert_dir/cert.pem" \
        -subj "/CN=PortWatch Test Signing (throwaway)" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -addext "keyUsage=critical,digitalSignature" \
        -addext "extendedKeyUsage=codeSigning" 2>/dev/null
    chmod 600 "$cert_dir/key.pem"
}

sign_driver() {
    local unsigned="$cert_dir/portwatch.unsigned.sys"
    cp "$build_dir/portwatch.dll" "$unsigned"
    rm -f "$package_dir/portwatch.sys"
    # osslsigncode rewrites the PE checksum after adding the signature.
    osslsigncode sign -certs "$cert_dir/cert.pem" -key "$cert_dir/key.pem" \
        -h sha256 -n "PortWatch NDIS Filter" \
        -in "$unsigned" -out "$package_dir/portwatch.sys" >/dev/null
    openssl x509 -in "$cert_dir/cert.pem" -outform DER -out "$package_dir/portwatch-test.cer"
}

verify_signature() {
    log "verifying the signature"
    osslsigncode verify -CAfile "$cert_dir/cert.pem" -in "$package_dir/portwatch.sys" >"$cert_dir/verify.log" 2>&1 || {
        cat "$cert_dir/verify.log" >&2
        exit 1
    }
    grep -q "Signature verification: ok" "$cert_dir/verify.log"
}

make_catalog() {
    # Made after signing: the catalog holds the Authenticode hash of the
    # final .sys (the hash leaves the embedded signature out).
    local unsigned="$cert_dir/portwatch.unsigned.cat"
    log "making portwatch.cat"
    "$target_dir/debug/portwatch-catalog" make "$package_dir" portwatch.inf "$unsigned" "${SOURCE_DATE_EPOCH:-$(date +%s)}"
    osslsigncode sign -certs "$cert_dir/cert.pem" -key "$cert_dir/key.pem" \
        -h sha256 -in "$unsigned" -out "$package_dir/portwatch.cat" >/dev/null
}

verify_catalog() {
    log "verifying portwatch.sys against portwatch.cat"
    osslsigncode verify -CAfile "$cert_dir/cert.pem" -catalog "$package_dir/portwatch.cat" \
        -in "$package_dir/portwatch.sys" >"$cert_dir/verify-catalog.log" 2>&1 || {
        cat "$cert_dir/verify-catalog.log" >&2
        exit 1
    }
    grep -q "Signature verification: ok" "$cert_dir/verify-catalog.log"
}

copy_symbols_and_readme() {
    # rust-lld writes the PDB next to the image; the image's CodeView record
    # names it portwatch.pdb (tests/package checks GUID and age).
    cp "$build_dir/portwatch.pdb" "$package_dir/portwatch.pdb"
    sed "s/@VERSION@/$(crate_version)/g" "$root/scripts/package-README.txt" | sed 's/$/\r/' >"$package_dir/README.txt"
}

# --- portwatch.exe -----------------------------------------------------------
# The Windows tool (tests/stress, crate portwatch-cli), cross-built with
# mingw-w64 for x86_64-pc-windows-gnu and copied into the package. Installs
# the Rust target and Debian's mingw-w64 when missing.
tool_triple=x86_64-pc-windows-gnu

package_tool() {
    rustup target list --installed | grep -qx "$tool_triple" || rustup target add "$tool_triple"
    if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
        log "installing gcc-mingw-w64-x86-64"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc-mingw-w64-x86-64
    fi
    log "building portwatch.exe ($tool_triple, release)"
    cargo build -p portwatch-cli --bin portwatch --release --target "$tool_triple" --target-dir "$target_dir"
    cp "$target_dir/$tool_triple/release/portwatch.exe" "$package_dir/portwatch.exe"
}
# -----------------------------------------------------------------------------

main() {
    ensure_rust_target
    ensure_apt_tools
    build_driver
    build_catalog_tool
    rm -rf "$package_dir"
    mkdir -p "$package_dir"
    "$root/scripts/stampinf.sh" "$root/inf/portwatch.inx" "$package_dir/portwatch.inf" "$(crate_version)" amd64
    make_test_certificate
    sign_driver
    verify_signature
    make_catalog
    verify_catalog
    copy_symbols_and_readme
    package_tool
    log "driver package in ${package_dir#"$root/"}:"
    ls -l "$package_dir"
}

main "$@"
