# Shared by cluster/local.sh and cluster/launch.sh (sourced, not run). Bash.
#
# The caller sets, then calls `cluster_run`:
#   cluster_self    script name for messages
#   cluster_mpi     array: the mpiexec command without the binary (mpiexec -n N [-f H] [-ppn P] ...)
#   cluster_again   array: how to rerun through the script (cluster/local.sh N), for the printed resume command
#   cluster_args    array: the llmprune arguments
#   cluster_restarts  relaunches allowed with --resume (0 = none)
# Extra mpiexec options (e.g. `-iface eth1`) can come from $MPIEXEC_FLAGS (split on spaces).

cluster_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cluster_restarts=0

# Resolves the llmprune binary ($LLMPRUNE_BIN or the release build) and checks for mpiexec (srun if
# cluster_launcher=srun).
cluster_setup() {
    cluster_bin="${LLMPRUNE_BIN:-$cluster_root/.build/release/llmprune}"
    [ -x "$cluster_bin" ] || {
        echo "$cluster_self: $cluster_bin not found (run: swift build -c release, or set LLMPRUNE_BIN)" >&2; exit 1; }
    if [ "${cluster_launcher:-mpiexec}" = srun ]; then
        command -v srun >/dev/null || { echo "$cluster_self: srun not found (not inside a Slurm installation?)" >&2; exit 1; }
    else
        command -v mpiexec >/dev/null || { echo "$cluster_self: mpiexec not found (apt-get install mpich)" >&2; exit 1; }
    fi
}

# Prints the job directory the llmprune arguments name: --resume D, else --job-dir D, else OUT.job for --out OUT;
# nothing if none.
cluster_job_dir() {
    local a=("$@") i resume="" jobdir="" out=""
    for ((i = 0; i < ${#a[@]}; i++)); do
        case "${a[i]}" in
            --resume) resume="${a[i + 1]-}"; i=$((i + 1)) ;;
            --resume=*) resume="${a[i]#*=}" ;;
            --job-dir) jobdir="${a[i + 1]-}"; i=$((i + 1)) ;;
            --job-dir=*) jobdir="${a[i]#*=}" ;;
            --out) out="${a[i + 1]-}"; i=$((i + 1)) ;;
            --out=*) out="${a[i]#*=}" ;;
        esac
    done
    if [ -n "$resume" ]; then echo "$resume"
    elif [ -n "$jobdir" ]; then echo "$jobdir"
    elif [ -n "$out" ]; then echo "${out%/}.job"
    fi
}

# Sets cluster_resume_args: `cluster prune --resume DIR` plus the run-time options of the first launch
# (--shard, --bind, --heartbeat-*, --curve, --quiet, --json). The job's settings come from DIR/job.json.
# If the arguments already resume, they are kept as they are.
cluster_make_resume_args() {
    local dir="$1"; shift
    local a=("$@") i
    for ((i = 0; i < ${#a[@]}; i++)); do
        case "${a[i]}" in --resume | --resume=*) cluster_resume_args=("$@"); return ;; esac
    done
    cluster_resume_args=(cluster prune --resume "$dir")
    for ((i = 0; i < ${#a[@]}; i++)); do
        case "${a[i]}" in
            --shard | --bind | --heartbeat-interval | --heartbeat-timeout)
                cluster_resume_args+=("${a[i]}" "${a[i + 1]-}"); i=$((i + 1)) ;;
            --shard=* | --bind=* | --heartbeat-interval=* | --heartbeat-timeout=* | --curve | --quiet | --json)
                cluster_resume_args+=("${a[i]}") ;;
        esac
    done
}

cluster_quote() { local s; s="$(printf '%q ' "$@")"; echo "${s% }"; }

# Runs the job; on failure prints `llmprune cluster status` of its job directory and the resume command, and
# relaunches with --resume up to cluster_restarts times. Exits with the last attempt's status.
cluster_run() {
    local args=("${cluster_args[@]}") rc=0 attempt=0 dir interrupted=0
    local extra=()
    # shellcheck disable=SC2206
    [ -n "${MPIEXEC_FLAGS:-}" ] && extra=($MPIEXEC_FLAGS)
    trap 'interrupted=1' INT TERM
    while :; do
        rc=0
        "${cluster_mpi[@]}" "${extra[@]}" "$cluster_bin" "${args[@]}" || rc=$?
        [ "$rc" -eq 0 ] && return 0
        echo "$cluster_self: attempt $attempt ended with status $rc" >&2
        # Resuming applies to `llmprune cluster prune` only.
        [ "${args[0]-}" = cluster ] && [ "${args[1]-}" = prune ] || exit "$rc"
        dir="$(cluster_job_dir "${args[@]}")"
        if [ -z "$dir" ] || [ ! -f "$dir/job.json" ]; then
            echo "$cluster_self: no job directory with a job.json${dir:+ at $dir}; nothing to resume" >&2
            exit "$rc"
        fi
        echo "== $(cluster_quote "$cluster_bin" cluster status "$dir")" >&2
        "$cluster_bin" cluster status "$dir" >&2 || true
        cluster_make_resume_args "$dir" "${args[@]}"
        echo "$cluster_self: resume with:" >&2
        echo "  $(cluster_quote "${cluster_again[@]}" "${cluster_resume_args[@]}")" >&2
        echo "  (that is: $(cluster_quote "${cluster_mpi[@]}" "${extra[@]}" "$cluster_bin" "${cluster_resume_args[@]}"))" >&2
        if [ "$interrupted" -eq 1 ] || [ "$rc" -eq 2 ] || [ "$attempt" -ge "$cluster_restarts" ]; then
            exit "$rc"   # interrupted, usage error (status 2), or no restarts left
        fi
        attempt=$((attempt + 1))
        echo "$cluster_self: relaunching (restart $attempt of $cluster_restarts)" >&2
        args=("${cluster_resume_args[@]}")
    done
}
