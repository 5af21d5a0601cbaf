#!/usr/bin/env bash
# The whole test run, as CI does it (.ci/run calls this):
#   1. installs the Debian packages the real-client tests use, if missing
#      (fetchmail, curl, openssl, postfix, dnsmasq, swaks, dig, mbsync, offlineimap,
#      mutt, python3-pytest, postgresql (server binaries for crates/store-postgres's
#      tests, which start their own throwaway server), and for the benchmark
#      dovecot-imapd, dovecot-pop3d); and moto's S3 server (PyPI `moto[server]`, in a
#      venv under the target directory) for the object-storage blob tests;
#   2. cargo fmt --check, clippy -D warnings, cargo test (main workspace; fuzz/ targets are clippy'd),
#      then the protocol crates' tests again on PostgreSQL (feature test-postgres);
#   3. builds the buudien binary and runs tests/e2e (pytest) against it, twice: on the
#      SQLite store, then with BUUDIEN_E2E_STORE=postgres on a throwaway PostgreSQL;
#   4. runs the benchmark harness in smoke mode (bench/run --smoke: buudien against
#      Dovecot and Postfix for a few seconds, so the harness never rots), and
#      bench/cluster --smoke (one node against two on a throwaway PostgreSQL).
# Extra arguments go to pytest, e.g. `./test.sh -k fetchmail`.
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$(pwd)
START=$SECONDS

if [[ -t 1 ]]; then BOLD=$'\033[1m' RED=$'\033[1;31m' RESET=$'\033[0m'; else BOLD='' RED='' RESET=''; fi

section() {
    printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"
}

die() {
    printf '%serror:%s %s\n' "$RED" "$RESET" "$*" >&2
    exit 1
}

# A python3 that can import pytest: the one on PATH (may be pyenv/venv), else Debian's.
find_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import pytest' >/dev/null 2>&1; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}

section "Debian packages for the real-client tests"
# command -> Debian package. postfix/dnsmasq live in /usr/sbin, which a non-root PATH
# may lack; dnsmasq-base is the binary without the system service.
have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; }
missing=()
for pair in fetchmail:fetchmail curl:curl openssl:openssl postfix:postfix \
    dnsmasq:dnsmasq-base swaks:swaks dig:bind9-dnsutils mbsync:isync \
    offlineimap:offlineimap3 mutt:mutt; do
    have "${pair%%:*}" || missing+=("${pair#*:}")
done
# The benchmark's reference servers (bench/run): Dovecot's IMAP and POP3 daemons.
[[ -x /usr/lib/dovecot/imap ]] || missing+=(dovecot-imapd)
[[ -x /usr/lib/dovecot/pop3 ]] || missing+=(dovecot-pop3d)
# The PostgreSQL backend's tests (crates/store-postgres) start a throwaway server of
# their own (initdb in a temp dir, a loopback port); they need the server binaries.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# swaks speaks TLS (--tls, --tlsc) only with IO::Socket::SSL, a mere Recommends.
perl -MIO::Socket::SSL -e 1 >/dev/null 2>&1 || missing+=(libio-socket-ssl-perl)
find_python >/dev/null || missing+=(python3-pytest)
# The object-storage blob tests (crates/store-postgres/tests/s3.rs, tests/e2e/test_s3.py)
# run against moto's S3 server: BUUDIEN_TEST_MOTO, else moto_server on PATH, else one
# this script installs from PyPI into a venv (which Debian's python3 makes only with
# python3-venv).
MOTO_VENV="${CARGO_TARGET_DIR:-$ROOT/target}/s3-venv"
find_moto() {
    if [[ -n ${BUUDIEN_TEST_MOTO:-} && -x $BUUDIEN_TEST_MOTO ]]; then
        echo "$BUUDIEN_TEST_MOTO"
    elif [[ -x $MOTO_VENV/bin/moto_server ]]; then
        echo "$MOTO_VENV/bin/moto_server"
    elif command -v moto_server >/dev/null 2>&1; then
        command -v moto_server
    else
        return 1
    fi
}
if ! find_moto >/dev/null && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 \
        || die "apt-get not found: install ${missing[*]} by hand"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install ${missing[*]}"
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Postfix: no questions and no system configuration (no /etc/postfix/main.cf, so
    # no system instance can start), and no service started by the install either:
    # a policy-rc.d that refuses every start, only for the time of the install
    # (an existing one is left alone). The tests run their own Postfix instances.
    echo "postfix postfix/main_mailer_type select No configuration" \
        | "${SUDO[@]}" debconf-set-selections
    own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# test.sh: no services started while installing test packages\nexit 101\n' \
            | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
        trap 'if [[ -n $own_policy ]]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi' EXIT
    fi
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends --no-upgrade "${missing[@]}"
    if [[ -n $own_policy ]]; then
        "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
        own_policy=
    fi
    # Belt and braces: a system Postfix that did start anyway must not hold port 25.
    if [[ -e /etc/postfix/main.cf ]] && "${SUDO[@]}" /usr/sbin/postfix status >/dev/null 2>&1; then
        echo "stopping the system postfix started by the install"
        "${SUDO[@]}" /usr/sbin/postfix stop || true
    fi
else
    echo "fetchmail, curl, openssl, postfix, dnsmasq, swaks, dig, mbsync, offlineimap, mutt, dovecot, postgresql and pytest are present"
fi
PYTHON=$(find_python) || die "python3 with pytest still not found after installing python3-pytest"
if ! find_moto >/dev/null; then
    echo "installing moto[server] into $MOTO_VENV"
    python3 -m venv "$MOTO_VENV" || die "python3 -m venv $MOTO_VENV failed"
    "$MOTO_VENV/bin/pip" install -q 'moto[server]==5.2.5' || die "pip install 'moto[server]' failed"
fi
BUUDIEN_TEST_MOTO=$(find_moto) || die "moto_server still not found after installing moto[server]"
export BUUDIEN_TEST_MOTO
echo "fetchmail: $(fetchmail --version 2>/dev/null | head -n1 || true)"
echo "curl:      $(curl --version | head -n1)"
echo "postfix:   $(/usr/sbin/postconf -d -h mail_version 2>/dev/null || echo '?')"
echo "dnsmasq:   $(/usr/sbin/dnsmasq --version 2>/dev/null | head -n1 || true)"
echo "swaks:     $(swaks --version 2>/dev/null | head -n1 || true)"
echo "mbsync:    $(mbsync --version 2>/dev/null | head -n1 || true)"
echo "offlineimap: $(offlineimap --version 2>/dev/null | head -n1 || true)"
echo "mutt:      $(mutt -v 2>/dev/null | head -n1 || true)"
echo "dovecot:   $(/usr/sbin/dovecot --version 2>/dev/null || echo ?)"
echo "postgres:  $(for b in /usr/lib/postgresql/*/bin/postgres; do "$b" --version; done 2>/dev/null | tail -n1 || echo ?)"
echo "moto:      $BUUDIEN_TEST_MOTO"
echo "python:    $PYTHON ($("$PYTHON" -c 'import pytest, sys; print(sys.version.split()[0], "pytest", pytest.__version__)'))"

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"

# A run from a clean clone gains nothing from incremental compilation, whose caches
# would double the target directory; a developer who wants them sets it to 1.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$target_dir"
echo "disk:      $(df -h --output=avail "$target_dir" | tail -1 | tr -d ' ') free where the build goes ($target_dir); a clean run needs about 10 GB"

section "cargo fmt --check"
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check

section "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
# The protocol crates, whose tests also run on PostgreSQL (feature test-postgres): their
# tests as they build for it.
PROTOCOL_CRATES=(-p buudien-imap -p buudien-pop3 -p buudien-smtp -p buudien-queue)
cargo clippy "${PROTOCOL_CRATES[@]}" --all-targets --features test-postgres -- -D warnings
# The fuzz targets build on stable too (cargo-fuzz adds the sanitizer flags on nightly);
# checking them here keeps them in step with the codec APIs. They share the main target
# directory, so the crates both workspaces use are built once.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" \
    cargo clippy --manifest-path fuzz/Cargo.toml --bins -- -D warnings

section "cargo test"
cargo test --workspace

# The same protocol tests on the PostgreSQL backend: each test gets a fresh database of
# a throwaway server (buudien_store_postgres::testing) instead of a SQLite directory.
section "cargo test --features test-postgres (imap, pop3, smtp, queue on PostgreSQL)"
PG_START=$SECONDS
cargo test "${PROTOCOL_CRATES[@]}" --features test-postgres
echo "protocol tests on PostgreSQL: $((SECONDS - PG_START)) s"

section "cargo build -p buudien"
cargo build -p buudien
BUUDIEN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/buudien"
[[ -x $BUUDIEN_BIN ]] || die "no binary at $BUUDIEN_BIN"

section "real clients: pytest tests/e2e (poplib, imaplib, curl, fetchmail, mbsync, offlineimap, mutt, smtplib, swaks, postfix)"
BUUDIEN_BIN="$BUUDIEN_BIN" BUUDIEN_E2E_REQUIRE_CLIENTS=1 \
    "$PYTHON" -m pytest -q tests/e2e "$@"

section "real clients on PostgreSQL: BUUDIEN_E2E_STORE=postgres pytest tests/e2e"
# The same tests and clients, every server on `[store] backend = "postgres"`: one
# throwaway PostgreSQL for the run (tests/e2e/pgutil.py), a fresh database per server.
# Deselected, and listed with their reasons at the end of pytest's output: the tests
# marked sqlite_only (SQLite's files, its fault injection, `buudien check`, the full
# disk of data_dir) and test_cluster.py (marked own_postgres: its two nodes run on a
# PostgreSQL of their own, already in the run above).
pg_start=$SECONDS
BUUDIEN_BIN="$BUUDIEN_BIN" BUUDIEN_E2E_REQUIRE_CLIENTS=1 BUUDIEN_E2E_STORE=postgres \
    "$PYTHON" -m pytest -q tests/e2e "$@"
echo "the PostgreSQL run took $((SECONDS - pg_start)) s"

section "benchmark harness: bench/run --smoke (debug binaries, small counts)"
cargo build -p loadgen
BUUDIEN_BIN="$BUUDIEN_BIN" LOADGEN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/loadgen" \
    "$PYTHON" bench/run --smoke --debug
BUUDIEN_BIN="$BUUDIEN_BIN" LOADGEN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/loadgen" \
    "$PYTHON" bench/cluster --smoke --debug

section "all passed in $((SECONDS - START)) s"
