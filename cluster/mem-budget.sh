#!/usr/bin/env bash
# Runs a command under a hard memory budget, so that a process (e.g. one MPI rank) behaves like a host with
# SIZE of RAM:
#   cluster/mem-budget.sh [-q] SIZE -- COMMAND [ARGS...]
#   e.g. mpiexec -n 4 cluster/mem-budget.sh 6G -- .build/release/llmprune cluster prune ...
# SIZE: 6G, 512M, 1.5G, 64K, 1T (binary units: G = GiB, M = MiB; "6Gi", "6GiB" also accepted) or plain bytes.
# The script execs COMMAND (same pid: mpiexec/Hydra signals and exit codes pass through). Mechanism, the first
# that works (or the one $LLMPRUNE_MEM_BUDGET_MODE = cgroup2 | cgroup1 | prlimit forces):
#   cgroup2  a cgroup `llmprune-<pid>` with memory.max = SIZE, memory.swap.max = 0, on the cgroup2 hierarchy with
#            the memory controller: a child of the caller's cgroup if that one may have memory-controlled
#            children, else (the usual case: a cgroup holding processes may not) a sibling of it
#   cgroup1  a child `llmprune-<pid>` of the caller's memory cgroup with memory.limit_in_bytes = SIZE and
#            memory.memsw.limit_in_bytes = SIZE when that file is writable (no escape to swap)
#   prlimit  `prlimit --as=SIZE` (or `ulimit -v`): an address-space limit, much weaker (see cluster/README.md)
# A cgroup counts resident memory: anonymous memory plus the page cache of the files the process reads or maps;
# clean page cache is reclaimed under the limit, so mapping a file larger than SIZE works. When the kernel's OOM
# killer kills COMMAND it dies of SIGKILL: a shell reports exit status 137 (128 + 9); mpiexec (Hydra) prints
# "Killed (signal 9)" and exits with status 9. Under prlimit nothing is killed: allocations fail (malloc/mmap
# return ENOMEM) instead.
# Since the script execs, it can't remove its own cgroup afterwards: each run first removes the sibling
# `llmprune-<pid>` cgroups whose process is gone and that are empty.
# One line on stderr says what was set up, unless -q. Exit 2: bad usage or SIZE; 1: the mechanism forced by
# $LLMPRUNE_MEM_BUDGET_MODE is unavailable; otherwise COMMAND's own status (126/127: can't run COMMAND).
set -u
me=mem-budget
usage() {
    echo "usage: cluster/mem-budget.sh [-q] SIZE -- COMMAND [ARGS...]  (SIZE: 6G, 512M, 1.5G or bytes)${1:+ ($1)}" >&2
    exit 2
}
die() { echo "$me: $*" >&2; exit 1; }

quiet=0
[ "${1-}" = -q ] && { quiet=1; shift; }
[ $# -ge 1 ] || usage
size_arg="$1"; shift
[ "${1-}" = -- ] || usage "missing --"
shift
[ $# -ge 1 ] || usage "missing COMMAND"

# SIZE → bytes (integer arithmetic: 1.5G = 1 GiB + 5 × 1 GiB / 10).
[[ "$size_arg" =~ ^([0-9]{1,15})(\.([0-9]{1,6}))?(([KkMmGgTt])(i|iB|B)?|B)?$ ]] || usage "bad SIZE '$size_arg'"
int="${BASH_REMATCH[1]}" frac="${BASH_REMATCH[3]}" unit="${BASH_REMATCH[5]}"
case "$unit" in
    '') mult=1 ;; [Kk]) mult=$((1 << 10)) ;; [Mm]) mult=$((1 << 20)) ;; [Gg]) mult=$((1 << 30)) ;; [Tt]) mult=$((1 << 40)) ;;
esac
[ -n "$frac" ] && [ "$mult" = 1 ] && usage "bad SIZE '$size_arg': a fraction needs a unit"
int=$((10#$int))
[ "$int" -le $(((1 << 62) / mult)) ] || usage "bad SIZE '$size_arg': too large"
bytes=$((int * mult))
[ -n "$frac" ] && bytes=$((bytes + 10#$frac * mult / 10 ** ${#frac}))
[ "$bytes" -gt 0 ] || usage "bad SIZE '$size_arg': must be > 0"
if [ "$bytes" -ge $((1 << 30)) ]; then
    human="$(awk -v b="$bytes" 'BEGIN { printf "%.2f GiB", b / 1073741824 }')"
else
    human="$(awk -v b="$bytes" 'BEGIN { printf "%.2f MiB", b / 1048576 }')"
fi

# Prints "MOUNTPOINT ROOT" of the first mount of type $1 (cgroup, cgroup2) whose super options contain $2.
cg_mount() {
    awk -v t="$1" -v o="$2" '{
        for (i = 7; i <= NF && $i != "-"; i++) ;
        if ($(i + 1) == t && (o == "" || ("," $(i + 3) ",") ~ ("," o ","))) { print $5, $4; exit }
    }' /proc/self/mountinfo 2>/dev/null
}

# Directory of cgroup path $3 (from /proc/self/cgroup) in a hierarchy mounted at $1 with mount root $2.
cg_dir() {
    local mnt="$1" root="$2" path="$3"
    if [ "$root" != / ]; then
        case "$path" in "$root" | "$root"/*) path="${path#"$root"}" ;; *) return 1 ;; esac
    fi
    path="${path%/}"
    echo "$mnt$path"
}

# Removes the llmprune-* cgroups under $1 whose owner (the pid in the name) is gone and that hold no process.
# A live owner may not have joined its new cgroup yet, so its cgroup is left alone even when empty.
cg_sweep() {
    local d name pid
    for d in "$1"/llmprune-*; do
        [ -d "$d" ] || continue
        name="${d##*/}"; pid="${name#llmprune-}"; pid="${pid%%-*}"
        case "$pid" in '' | *[!0-9]*) continue ;; esac
        [ -d "/proc/$pid" ] && continue
        [ -z "$(cat "$d/cgroup.procs" 2>/dev/null)" ] || continue
        # nested budgets first (a stale run that itself started mem-budget.sh), then the cgroup itself
        find "$d" -mindepth 1 -depth -type d -name 'llmprune-*' -exec rmdir {} + 2>/dev/null
        rmdir "$d" 2>/dev/null
    done
    return 0
}

# Creates a fresh llmprune-<pid>[-N] cgroup under $1; sets cg_new.
cg_create() {
    local base="$1" n=0
    cg_new="$base/llmprune-$$"
    while ! mkdir "$cg_new" 2>/dev/null; do
        # left over from an earlier process with this pid: reuse it if empty, else pick another name
        if [ -d "$cg_new" ] && [ -z "$(cat "$cg_new/cgroup.procs" 2>/dev/null)" ] && [ "$(ls "$cg_new" | grep -c '^llmprune-')" = 0 ]; then
            return 0
        fi
        n=$((n + 1))
        [ "$n" -le 5 ] || { why="cannot create a cgroup under $base"; return 1; }
        cg_new="$base/llmprune-$$-$n"
    done
}

# Writes value $2 to cgroup file $1; on failure, removes the new cgroup and sets why.
cg_write() {
    if ! { echo "$2" >"$1"; } 2>/dev/null; then
        why="cannot write $2 to $1"
        rmdir "$cg_new" 2>/dev/null
        return 1
    fi
}

# Moves this shell ($$, which becomes COMMAND) into $cg_new and checks that /proc/$$/cgroup agrees: the line whose
# controller list has $1 ("" for the cgroup2 line "0::PATH") must name path $2.
cg_join() {
    if ! { echo $$ >"$cg_new/cgroup.procs"; } 2>/dev/null && ! { echo $$ >"$cg_new/tasks"; } 2>/dev/null; then
        why="cannot move pid $$ into $cg_new"
        rmdir "$cg_new" 2>/dev/null
        return 1
    fi
    awk -v c="$1" -v p="$2" '{
        i = index($0, ":"); rest = substr($0, i + 1); j = index(rest, ":")
        ctl = substr(rest, 1, j - 1); path = substr(rest, j + 1)
        if ((c == "" ? ctl == "" && substr($0, 1, i) == "0:" : ("," ctl ",") ~ ("," c ",")) && path == p) found = 1
    } END { exit !found }' /proc/$$/cgroup || { why="pid $$ is not in $2 after joining it"; return 1; }
}

# cgroup v2. Sets cg_desc on success, why on failure.
try_cgroup2() {
    local m mnt root line path dir base rel
    m="$(cg_mount cgroup2 '')"
    [ -n "$m" ] || { why="no cgroup2 hierarchy mounted"; return 1; }
    mnt="${m% *}" root="${m#* }"
    line="$(grep -m1 '^0::' /proc/self/cgroup)" || { why="no cgroup2 line in /proc/self/cgroup"; return 1; }
    path="${line#0::}"
    dir="$(cg_dir "$mnt" "$root" "$path")" || { why="own cgroup $path is outside the mount at $mnt"; return 1; }
    grep -qw memory "$dir/cgroup.controllers" 2>/dev/null \
        || { why="memory controller not enabled on the cgroup2 hierarchy at $mnt (controllers: $(cat "$mnt/cgroup.controllers" 2>/dev/null))"; return 1; }
    # Under the caller's own cgroup if memory is enabled for its children (it holds this process, so that
    # happens only at the root: a non-root cgroup with processes can't have memory-controlled children); else
    # under its parent, as a sibling. Controllers are never enabled here (no change outside the new cgroup).
    base=""
    if grep -qw memory "$dir/cgroup.subtree_control" 2>/dev/null; then
        base="$dir"
    elif [ "$dir" != "$mnt" ] && grep -qw memory "${dir%/*}/cgroup.subtree_control" 2>/dev/null; then
        base="${dir%/*}"
    fi
    [ -n "$base" ] || { why="memory controller not enabled for children of $dir or of its parent"; return 1; }
    [ -w "$base" ] || { why="$base is not writable"; return 1; }
    cg_sweep "$base"
    cg_create "$base" || return 1
    cg_write "$cg_new/memory.max" "$bytes" || return 1
    [ -e "$cg_new/memory.swap.max" ] && { cg_write "$cg_new/memory.swap.max" 0 || return 1; }
    rel="${root%/}${cg_new#"$mnt"}"
    cg_join '' "$rel" || return 1
    cg_desc="cgroup v2 $rel"
}

# cgroup v1 (the memory controller's own hierarchy).
try_cgroup1() {
    local m mnt root line path dir rel
    m="$(cg_mount cgroup memory)"
    [ -n "$m" ] || { why="no cgroup v1 memory hierarchy mounted"; return 1; }
    mnt="${m% *}" root="${m#* }"
    line="$(grep -m1 -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' /proc/self/cgroup)" \
        || { why="no memory line in /proc/self/cgroup"; return 1; }
    path="${line#*:}"; path="${path#*:}"
    dir="$(cg_dir "$mnt" "$root" "$path")" || { why="own memory cgroup $path is outside the mount at $mnt"; return 1; }
    [ -d "$dir" ] && [ -w "$dir" ] || { why="$dir is not writable"; return 1; }
    cg_sweep "$dir"
    cg_create "$dir" || return 1
    cg_write "$cg_new/memory.limit_in_bytes" "$bytes" || return 1
    # no escape to swap (memsw = memory + swap; it must be set after, and be >=, limit_in_bytes)
    # (best effort: if it fails the status line says so; it matters only with swap)
    if [ -w "$cg_new/memory.memsw.limit_in_bytes" ] && ! { echo "$bytes" >"$cg_new/memory.memsw.limit_in_bytes"; } 2>/dev/null; then
        swap_note=", swap not capped"
    fi
    { echo 0 >"$cg_new/memory.oom_control"; } 2>/dev/null   # OOM killer on (a parent may have disabled it)
    rel="${root%/}${cg_new#"$mnt"}"
    cg_join memory "$rel" || return 1
    cg_desc="cgroup v1 $rel${swap_note-}"
}

say() { [ "$quiet" = 1 ] || echo "$me: $human ($1) for pid $$" >&2; }

why="" fallback=""
mode="${LLMPRUNE_MEM_BUDGET_MODE:-auto}"
case "$mode" in
    cgroup2) try_cgroup2 || die "cgroup v2 unavailable: $why" ;;
    cgroup1) try_cgroup1 || die "cgroup v1 unavailable: $why" ;;
    prlimit) ;;
    auto)
        if ! try_cgroup2; then
            why2="$why"
            if ! try_cgroup1; then mode=prlimit; fallback="no cgroup (v2: $why2; v1: $why)"; fi
        fi ;;
    *) usage "LLMPRUNE_MEM_BUDGET_MODE must be cgroup2, cgroup1 or prlimit, not '$mode'" ;;
esac
if [ "$mode" = prlimit ]; then
    say "prlimit --as: weaker, virtual-memory limit: address space, not resident memory, is capped${fallback:+; $fallback}"
    if command -v prlimit >/dev/null 2>&1; then exec prlimit --as="$bytes" -- "$@"; fi
    ulimit -v $((bytes / 1024)) 2>/dev/null || die "cannot set ulimit -v"
    exec "$@"
fi
say "$cg_desc"
exec "$@"
