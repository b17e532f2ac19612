#!/bin/sh
# compare.sh FILE.gguf: the tensor table and data offset that @huggingface/gguf reads must
# equal what ds4-gguf reads, and every metadata key must be present in both.
# Exit 0 when they agree, 1 when not, 77 when node or the package is missing.
cd "$(dirname "$0")/../.." || exit 2
command -v node >/dev/null 2>&1 && [ -d tests/interop/node_modules/@huggingface/gguf ] || exit 77
f=$1
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
node tests/interop/read_gguf.mjs "$f" >"$t/theirs" || exit 1
bin/ds4-gguf info --items 100000 "$f" >"$t/info" || exit 1
awk 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "at") { sub(",", "", $(i + 1)); print "data " $(i + 1) } }' "$t/info" >"$t/ours"
awk '/^ +[0-9]+  [^ ]/ && $0 !~ /=/ {
       shape = ""; i = 4
       while (i <= NF) { shape = shape (shape ? " " : "") $i; if ($i ~ /\]$/) break; i++ }
       print "tensor " $2 " " $3 " " shape " " $(i + 1) }' "$t/info" >>"$t/ours"
grep -E '^(data|tensor) ' "$t/theirs" >"$t/theirs-tensors"
grep '^key ' "$t/theirs" | sed 's/^key \([^ ]*\) = .*/\1/' | sort >"$t/their-keys"
awk '/^ +[0-9]+: / { print $3 }' "$t/info" | sort >"$t/our-keys"
# An empty listing would compare equal: require the tensors on both sides.
[ "$(grep -c "^tensor " "$t/ours")" -gt 0 ] || { echo "compare: no tensors listed" >&2; exit 1; }
diff "$t/ours" "$t/theirs-tensors" >&2 && diff "$t/our-keys" "$t/their-keys" >&2
