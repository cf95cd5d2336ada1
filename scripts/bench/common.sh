# Sourced by the bench scripts after their flags are parsed: resolves the model (default: the one
# scripts/setup.sh fetches), builds the release binary, and makes a scratch directory removed on exit.
# Sets: root, model, bin, out.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
default_model="$(scripts/setup.sh | tail -n 1)"
model="${model:-$default_model}"
swift build -c release --product llmprune 2>&1 | grep -v "prohibited flag" | tail -n 1 >&2
bin=.build/release/llmprune
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
