#!/usr/bin/env bash
# Checks cluster/mem-budget.sh for real, in each mechanism this machine offers (cgroup v2, cgroup v1, prlimit):
# usage errors; a memory hog under the limit runs, one over it is stopped (cgroups: OOM-killed, status 137;
# prlimit: the allocation fails); the command keeps the script's pid and sits in its own llmprune-<pid> cgroup;
# a mapped file larger than the limit can be read (clean page cache is reclaimed); stale empty llmprune-*
# cgroups are removed; under `mpiexec -n 2` each rank gets its own cgroup. A few seconds.
#   scripts/test_mem_budget.sh        exit 0: all passed, or skipped (nothing to test with); 1: a check failed
set -u
root="$(cd "$(dirname "$0")/.." && pwd)"
mb="$root/cluster/mem-budget.sh"
fails=0 passes=0
pass() { passes=$((passes + 1)); echo "  ok    $*"; }
fail() { fails=$((fails + 1)); echo "  FAIL  $*"; }
expect() { # expect NAME WANTED_STATUS GOT_STATUS
    if [ "$3" = "$2" ]; then pass "$1 (status $3)"; else fail "$1: status $3, wanted $2"; fi
}

command -v python3 >/dev/null || { echo "test_mem_budget: skipped: python3 not found (it makes the memory hogs)"; exit 0; }
tmp="$(mktemp -d "${TMPDIR:-/tmp}/mem-budget-test.XXXXXX")" || exit 1
trap 'rm -rf "$tmp"' EXIT

echo "usage"
"$mb" 2>/dev/null; expect "no arguments" 2 $?
"$mb" 1G true 2>/dev/null; expect "missing --" 2 $?
"$mb" 1G -- 2>/dev/null; expect "missing COMMAND" 2 $?
for bad in abc 1.5 0 6X -1G 1.2.3G; do
    "$mb" "$bad" -- true 2>/dev/null; expect "bad SIZE '$bad'" 2 $?
done
LLMPRUNE_MEM_BUDGET_MODE=bogus "$mb" 1G -- true 2>/dev/null; expect "bad LLMPRUNE_MEM_BUDGET_MODE" 2 $?
out="$("$mb" 1.5G -- true 2>&1)"
case "$out" in "mem-budget: 1.50 GiB ("*) pass "1.5G is 1.50 GiB" ;; *) fail "1.5G: '$out'" ;; esac
out="$("$mb" -q 512M -- true 2>&1)"
[ -z "$out" ] && pass "-q prints nothing" || fail "-q printed '$out'"

# The directory of the cgroup a budgeted `sh` lands in, for mode $1 (cgroup1 | cgroup2), from its /proc/self/cgroup.
cg_fs_dir() {
    local line path m
    if [ "$1" = cgroup1 ]; then
        line="$(grep -m1 -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' "$2")"
        m="$(awk '{ for (i = 7; $i != "-"; i++) ; if ($(i + 1) == "cgroup" && ("," $(i + 3) ",") ~ /,memory,/) { print $5, $4; exit } }' /proc/self/mountinfo)"
    else
        line="$(grep -m1 '^0::' "$2")"
        m="$(awk '{ for (i = 7; $i != "-"; i++) ; if ($(i + 1) == "cgroup2") { print $5, $4; exit } }' /proc/self/mountinfo)"
    fi
    path="${line#*:}"; path="${path#*:}"
    local mnt="${m% *}" mroot="${m#* }"
    [ "$mroot" = / ] || path="${path#"$mroot"}"
    echo "$mnt$path"
}

# A file on a disk-backed file system (tmpfs pages are not reclaimable without swap), out of the page cache.
bigfile=""
if [ "$(stat -f -c %T "$tmp")" != tmpfs ]; then
    bigfile="$tmp/big.bin"
    dd if=/dev/zero of="$bigfile" bs=1M count=512 conv=fsync status=none
    python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)" "$bigfile"
fi
cat >"$tmp/readmap.py" <<'EOF'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
n = os.fstat(fd).st_size
m = mmap.mmap(fd, n, prot=mmap.PROT_READ)
s = sum(m[i] for i in range(0, n, 4096))
EOF

tested=0
for mode in cgroup2 cgroup1 prlimit; do
    if ! why="$(LLMPRUNE_MEM_BUDGET_MODE=$mode "$mb" -q 64M -- true 2>&1)"; then
        echo "$mode: not available here: ${why#mem-budget: }"
        continue
    fi
    tested=$((tested + 1))
    echo "$mode"
    export LLMPRUNE_MEM_BUDGET_MODE=$mode
    "$mb" -q 256M -- python3 -c "b = bytearray(64 << 20)"; expect "64 MiB hog under 256M runs" 0 $?
    if [ "$mode" = prlimit ]; then
        "$mb" -q 256M -- python3 -c "b = bytearray(512 << 20)" 2>/dev/null; expect "512 MiB hog under 256M: MemoryError" 1 $?
    else
        ("$mb" -q 256M -- python3 -c "b = bytearray(512 << 20)"; exit $?) 2>/dev/null; expect "512 MiB hog under 256M: OOM-killed" 137 $?
        # same pid, own cgroup with the limit
        "$mb" -q 256M -- sh -c 'echo $$ >"$1"; cat /proc/self/cgroup >"$2"' sh "$tmp/pid" "$tmp/cgroup"
        dir="$(cg_fs_dir "$mode" "$tmp/cgroup")"
        pid="$(cat "$tmp/pid")"
        [ "${dir##*/}" = "llmprune-$pid" ] && pass "runs as the script's pid $pid in ${dir##*/}" \
            || fail "pid $pid in cgroup '$dir'"
        limit="$(cat "$dir/memory.limit_in_bytes" "$dir/memory.max" 2>/dev/null | head -1)"
        [ "$limit" = $((256 << 20)) ] && pass "limit $limit bytes" || fail "limit '$limit'"
        # stale, empty llmprune-<dead pid> siblings are removed; the previous run's is one of them
        true & dead=$!; wait $dead
        parent="${dir%/*}"
        mkdir "$parent/llmprune-$dead" 2>/dev/null
        "$mb" -q 256M -- true
        [ ! -e "$parent/llmprune-$dead" ] && [ ! -e "$dir" ] && pass "stale llmprune-* cgroups removed" \
            || fail "stale cgroups left: $(ls -d "$parent/llmprune-$dead" "$dir" 2>/dev/null | tr '\n' ' ')"
        if [ -n "$bigfile" ]; then
            "$mb" -q 128M -- python3 "$tmp/readmap.py" "$bigfile"; expect "reading a mapped 512 MiB file under 128M" 0 $?
            python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)" "$bigfile"
        else
            echo "  skip  mapped file: $tmp is tmpfs"
        fi
        if command -v mpiexec >/dev/null; then
            timeout 60 mpiexec -n 2 "$mb" -q 256M -- sh -c 'echo "$PMI_RANK $$ $(grep -m1 "llmprune-$$\$" /proc/self/cgroup)"' \
                >"$tmp/ranks" 2>&1
            rc=$?
            n="$(grep -c "llmprune-" "$tmp/ranks")"
            distinct="$(awk '{ print $3 }' "$tmp/ranks" | sort -u | grep -c llmprune-)"
            [ "$rc" = 0 ] && [ "$n" = 2 ] && [ "$distinct" = 2 ] && pass "mpiexec -n 2: one cgroup per rank" \
                || fail "mpiexec -n 2 (status $rc): $(tr '\n' ';' <"$tmp/ranks")"
        else
            echo "  skip  mpiexec: not found"
        fi
    fi
    unset LLMPRUNE_MEM_BUDGET_MODE
done

[ "$tested" -gt 0 ] || { echo "test_mem_budget: skipped: no mechanism available"; exit 0; }
echo "test_mem_budget: $passes passed, $fails failed"
[ "$fails" = 0 ]
