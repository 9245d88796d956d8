#!/usr/bin/env bash
# Builds a static `stateledger` binary (release profile, x86_64-unknown-linux-gnu with glibc
# linked in: `-C target-feature=+crt-static`) into target/static/, for the FROM-scratch image
# (deploy/Dockerfile) or for copying onto a host as it is. Prints the binary's path last.
#
#   deploy/build-static.sh            # target/static/x86_64-unknown-linux-gnu/release/stateledger
#   deploy/build-static.sh --dev      # target/debug/stateledger, reusing the debug build
#
# The explicit --target is needed: without it, RUSTFLAGS reach proc-macro crates too, which cannot
# be linked statically. The target directory is its own (the flags differ from a normal build's,
# so sharing one would rebuild everything each time). Cold, this took 11 minutes on 2 busy
# cores; docs/OPERATIONS.md ("Deploying") has the measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_INCREMENTAL=0
target_dir="${STATELEDGER_STATIC_TARGET_DIR:-target/static}"
triple=x86_64-unknown-linux-gnu
if [[ "${1:-}" == "--dev" ]]; then
  # The dev profile in target/, where `cargo test` (.ci/test) has built every dependency: only the
  # binary's own crate is compiled again, with crt-static given to it alone (`cargo rustc` passes
  # its flags to the final crate only), and linked statically. For tests of the packaging (CI),
  # not for release: the workspace's own crates are not optimised.
  cargo rustc --locked -p stateledger-cli --bin stateledger -- -C target-feature=+crt-static
  bin=target/debug/stateledger
  if ! ldd "$bin" 2>&1 | grep -Eq 'statically linked|not a dynamic executable'; then
    echo "$bin is not statically linked:" >&2
    ldd "$bin" >&2
    exit 1
  fi
  echo "$bin"
  exit 0
fi
# Cargo prints a warning from the linker: static glibc's getaddrinfo "requires at runtime the shared
# libraries from the glibc version used for linking". Since glibc 2.34 the files and dns lookups
# are inside libc, so it needs none of them; the warning is about other NSS sources (LDAP, ...).
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$target_dir" \
  cargo build --release --locked --target "$triple" -p stateledger-cli --bin stateledger
bin="$target_dir/$triple/release/stateledger"
if ! ldd "$bin" 2>&1 | grep -Eq 'statically linked|not a dynamic executable'; then
  echo "$bin is not statically linked:" >&2
  ldd "$bin" >&2
  exit 1
fi
echo "$bin"
