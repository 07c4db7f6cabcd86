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

# Benchmarks: the 8-host lab booted from cached images and taken down, 5 times each.
bench runs="5":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release --quiet
    clou=target/release/clou
    $clou lab down >/dev/null 2>&1 || true
    up=(); down=()
    for i in $(seq {{runs}}); do
        s=$(date +%s.%N); $clou lab up >/dev/null; e=$(date +%s.%N); up+=($(awk "BEGIN {print $e - $s}"))
        s=$(date +%s.%N); $clou lab down >/dev/null; e=$(date +%s.%N); down+=($(awk "BEGIN {print $e - $s}"))
    done
    stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "median %.2f s (min %.2f, max %.2f, n=%d)\n", a[int((NR+1)/2)], a[1], a[NR], NR}'; }
    echo "lab up, 8 hosts, cached images: $(stats "${up[@]}")"
    echo "lab down, 8 hosts:              $(stats "${down[@]}")"

# The agent as hosts run it: glibc linked statically (static-pie), so one
# binary runs on Debian 11, 12 and 13 (checked on lab hosts of each).
agent:
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p clou-agent --target x86_64-unknown-linux-gnu --target-dir target/agent
    @ls -l target/agent/x86_64-unknown-linux-gnu/release/clou-agent
