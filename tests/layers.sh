#!/bin/sh
# The include graph of engine/ and tools/ keeps the design:
#   1. every header name is unique (each folder is on the include path);
#   2. no circles between modules (a module is a .c and its .h);
#   3. a folder includes only its own layer and those below it:
#        base < formats < ops < model < text < cpu < forward < jobs < serve < tools,
#      except that cpu/ includes forward/backend.h, the interface it implements;
#   4. nothing outside engine/cpu/ includes a CPU header but the registry
#      (engine/forward/registry.c). Tests are exempt.
cd "$(dirname "$0")/.." || exit 2
list=$(mktemp)
trap 'rm -f "$list"' EXIT
for f in $(find engine tools -name '*.[ch]' | sort); do
    sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f" | while read -r h; do echo "$f $h"; done
    echo "$f"
done >"$list"
find engine tools -name '*.h' | sort | awk -v list="$list" '
function folder(path,   p) { split(path, p, "/"); return p[1] == "tools" ? "tools" : p[2] }
function module(path) { sub(/\.[ch]$/, "", path); return path }
# depth-first search for a circle through the module graph
function visit(m,   i, n, next_m) {
    state[m] = 1
    stack[++depth] = m
    n = split(out[m], targets, " ")
    for (i = 1; i <= n; i++) {
        next_m = targets[i]
        if (state[next_m] == 1) {
            path = next_m
            for (j = depth; j >= 1 && stack[j] != next_m; j--) path = stack[j] " -> " path
            circle = next_m " -> " path
            return 1
        }
        if (!state[next_m] && visit(next_m)) return 1
        n = split(out[m], targets, " ") # (the recursion reused the array)
    }
    state[m] = 2
    depth--
    return 0
}
BEGIN {
    split("base formats ops model text cpu forward jobs serve tools", order, " ")
    for (i in order) rank[order[i]] = i + 0 # a number: "10" < "8" as strings
}
{
    name = $0; sub(/.*\//, "", name)
    if (name in header) { dup = dup " " name }
    header[name] = $0
}
END {
    failed = 0
    if (dup != "") { print "FAIL header names used twice:" dup; failed++ } else print "ok   header names are unique"
    while ((getline line < list) > 0) {
        n = split(line, w, " ")
        modules[module(w[1])] = 1
        if (n < 2 || !(w[2] in header)) continue
        from = w[1]; to = header[w[2]]
        mf = module(from); mt = module(to)
        if (mf != mt && index(" " out[mf] " ", " " mt " ") == 0) out[mf] = out[mf] " " mt
        ff = folder(from); ft = folder(to)
        if (rank[ff] < rank[ft] && !(ff == "cpu" && to == "engine/forward/backend.h"))
            upward = upward "\n     " from " includes " to
        if (ft == "cpu" && ff != "cpu" && from != "engine/forward/registry.c")
            cpu_leak = cpu_leak "\n     " from " includes " to
    }
    found = 0
    for (m in modules) if (!state[m] && visit(m)) { found = 1; break }
    if (found) { print "FAIL a circle: " circle; failed++ } else print "ok   no circles between modules"
    if (upward != "") { print "FAIL includes from a lower layer to a higher one:" upward; failed++ }
    else print "ok   every folder includes only its layer and those below"
    if (cpu_leak != "") { print "FAIL CPU headers included outside engine/cpu/:" cpu_leak; failed++ }
    else print "ok   only the registry includes CPU headers"
    print 4 - failed " passed, " failed " failed"
    exit failed > 0
}'
