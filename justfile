# Recipes for clou's developers. `just --list` shows them.
# (just itself: `cargo install just`.)

# Everything CI runs.
ci:
    bash .ci/run

# Every test, unit and end-to-end (the end-to-end ones boot lab hosts: run as root).
test:
    cargo test --workspace

# Format and lint.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The demo: the lab replica of the Girofle fleet.
demo:
    cargo run --release -- demo

# Stop the demo lab and delete its hosts.
demo-down:
    cargo run --release -- lab down --purge

# Benchmarks on the 8-host lab: boot from cached images and take down, then
# apply every role of the fleet with nothing to change (and in check mode), n times each.
bench runs="5":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release --quiet
    clou=target/release/clou
    $clou lab down >/dev/null 2>&1 || true
    up=(); down=(); noop=(); check=(); status=()
    stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "median %.2f s (min %.2f, max %.2f, n=%d)\n", a[int((NR+1)/2)], a[1], a[NR], NR}'; }
    timed() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); awk "BEGIN {print $e - $s}"; }
    for i in $(seq {{runs}}); do
        up+=($(timed $clou lab up))
        down+=($(timed $clou lab down))
    done
    $clou lab up >/dev/null
    $clou apply --in-lab >/dev/null 2>&1 || { echo "the first apply failed"; exit 1; }
    for i in $(seq {{runs}}); do
        noop+=($(timed $clou apply --in-lab))
        check+=($(timed $clou apply --in-lab --check))
        status+=($(timed $clou status --in-lab))
    done
    echo "lab up, 8 hosts, cached images:     $(stats "${up[@]}")"
    echo "lab down, 8 hosts:                  $(stats "${down[@]}")"
    echo "no-op apply, whole fleet, 8 hosts:  $(stats "${noop[@]}")"
    echo "no-op apply --check, 8 hosts:       $(stats "${check[@]}")"
    echo "clou status, 8 hosts:               $(stats "${status[@]}")"

# The agent as hosts run it, built by controller/build.rs (static glibc, so
# one binary runs on Debian 11, 12 and 13) and embedded in clou.
agent:
    cargo build -p clou
    @ls -l target/agent/x86_64-unknown-linux-gnu/agent/clou-agent
