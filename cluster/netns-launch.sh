#!/usr/bin/env bash
# Hydra's "ssh" into a node of the cluster/netns.sh test bed:
#   mpiexec -launcher ssh -launcher-exec cluster/netns-launch.sh -localhost 10.77.0.1 -hosts n1,n2 …
# (`cluster/netns.sh mpiexec …` adds these flags). Hydra calls its ssh launcher as `ssh -x HOST WORD…`, the
# words being the hydra_pmi_proxy command line with shell quoting ("/usr/bin/hydra_pmi_proxy" in quotes), so like
# sshd this runs `sh -c "WORD…"`, here inside HOST's network, UTS and mount namespaces.
#
# Like an ssh session without a terminal, the proxy does not die with its launcher: it runs in a session of its
# own, and a signal to this script does not reach it. Hydra must reach the proxy over the bed's network, as it
# would a remote host's, so a node cut off stays cut off (no local kill crosses the cut).
set -euo pipefail
tag="${NETBED_TAG:-lpnb}"
state="/run/llmprune-netbed-$tag"
self="netns-launch.sh"

# ssh options hydra (or a user) may pass before the host: flags alone, and options with a value.
while [ $# -gt 0 ]; do
    case "$1" in
        -[1246AaCfGgKkMNnqsTtVvXxYy]) shift ;;
        -[BbcDEeFIiJLlmOoPpQRSWw]) [ $# -ge 2 ] || { echo "$self: $1 needs a value" >&2; exit 255; }; shift 2 ;;
        -[BbcDEeFIiJLlmOoPpQRSWw]?*) shift ;;
        --) shift; break ;;
        -*) echo "$self: unknown ssh option $1" >&2; exit 255 ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || { echo "usage: $self [ssh options] HOST COMMAND..." >&2; exit 255; }
host="${1#*@}"; shift

# HOST is a node's name or address, as listed by `cluster/netns.sh up` in $state/nodes ("i name addr netns").
[ -f "$state/nodes" ] || { echo "$self: no test bed is up (cluster/netns.sh up N)" >&2; exit 255; }
line="$(awk -v h="$host" '$2 == h || $3 == h' "$state/nodes" | head -1)"
[ -n "$line" ] || { echo "$self: $host is not a node of the test bed" >&2; exit 255; }
read -r _ name _ ns <<<"$line"

# setsid -f -w: the proxy runs in a child in a session of its own; this process waits for it and returns its status.
exec setsid -f -w nsenter --net="/run/netns/$ns" --uts="$state/$name.uts" --mount="$state/$name.mnt" --wd="$PWD" \
    -- sh -c "$*"
