#!/usr/bin/env bash
# A multi-node test bed on one Linux host: N "nodes", each a network namespace with its own host name (a persistent
# UTS namespace) and its own mount namespace, joined by a bridge on a private subnet, named in /etc/hosts. MPI and the
# control plane between nodes then cross real interfaces (veth → bridge → veth) instead of loopback and shared
# memory, and a node can be cut off, delayed or made lossy. Root only.
#
# Why a mount namespace: UCX (MPICH's ch4:ucx here) takes two processes with the same
# /proc/sys/kernel/random/boot_id for one machine and moves their data through shared memory, host names
# notwithstanding (measured: 1.47 MB of MPI reductions, 26 KB on the wire). Each node gets its own boot_id (a file
# bound over it) and its own /dev/shm, so UCX sees separate machines and uses TCP. Everything else (the files, the
# job directory, the pids) stays shared, like a cluster with a shared filesystem.
#
#   cluster/netns.sh up N              make nodes n1..nN (removes a previous bed first)
#   cluster/netns.sh down              remove everything the bed made; safe to repeat, also after a crash
#   cluster/netns.sh status            nodes, addresses, link state, shaping, bytes
#   cluster/netns.sh exec NODE CMD...  run CMD inside NODE (its network and host name; same files and pids)
#   cluster/netns.sh mpiexec ARGS...   mpiexec with hydra launching into the nodes (-hosts n1,n2 … in ARGS)
#   cluster/netns.sh cut NODE          NODE's cable out: its bridge port goes down, packets vanish both ways
#   cluster/netns.sh restore NODE      cable back in (delay and loss stay until `clear`)
#   cluster/netns.sh delay NODE MS     what NODE receives waits MS ms (one direction: a round trip to another
#                                      node gains MS, 2·MS with both delayed); netem on the bridge port if the
#                                      kernel has it, else cluster/netdelay.c on an NFQUEUE (iptables) in the node
#   cluster/netns.sh loss NODE PCT     drop PCT % of packets each way (netem, else nftables in the node)
#   cluster/netns.sh clear NODE        remove delay and loss
#   cluster/netns.sh bytes NODE        "RX TX": bytes NODE received and sent on its interface
#   cluster/netns.sh addr NODE         NODE's address
#
# NODE is a host name (n1) or a number (1). Names and addresses, overridable from the environment:
#   NETBED_SUBNET=10.77.0   bridge .1 (where mpiexec's side is), node i at .(10+i)
#   NETBED_HOST=n           host names n1..nN
#   NETBED_TAG=lpnb         bridge lpnb0, namespaces and host-side veths lpnb-n1…, state in /run/llmprune-netbed-lpnb
# /etc/hosts lines the bed adds end with "# llmprune-netbed TAG"; `down` removes exactly those (beds with other tags
# keep theirs).
# -E: the ERR trap of `up` (undo a half-made bed) also fires inside functions.
set -Eeuo pipefail

subnet="${NETBED_SUBNET:-10.77.0}"
hostp="${NETBED_HOST:-n}"
tag="${NETBED_TAG:-lpnb}"
bridge="${tag}0"
state="/run/llmprune-netbed-$tag"
mark="# llmprune-netbed $tag"
self="netns.sh"
here="$(cd "$(dirname "$0")" && pwd)"

die() { echo "$self: $*" >&2; exit 1; }
usage() { echo "usage: cluster/netns.sh up N | down | status | exec NODE CMD... | mpiexec ARGS... | cut NODE | restore NODE | delay NODE MS | loss NODE PCT | clear NODE | bytes NODE | addr NODE" >&2; exit 2; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, bridge, /etc/hosts)"
    command -v ip >/dev/null || die "ip (iproute2) not found"
    command -v nsenter >/dev/null && command -v unshare >/dev/null || die "nsenter/unshare (util-linux) not found"
}

# The node number of NODE (n3 or 3), checked against the bed that is up.
node_index() {
    local n="$1" i
    case "$n" in
        "$hostp"[0-9]*) i="${n#"$hostp"}" ;;
        [0-9]*) i="$n" ;;
        *) die "unknown node '$n' (expected ${hostp}K or K)" ;;
    esac
    case "$i" in '' | *[!0-9]*) die "unknown node '$n' (expected ${hostp}K or K)" ;; esac
    [ -f "$state/nodes" ] || die "no test bed is up (run: cluster/netns.sh up N)"
    grep -q "^$i " "$state/nodes" || die "node '$n' is not in the bed (nodes: $(cut -d' ' -f2 "$state/nodes" | tr '\n' ' '))"
    echo "$i"
}
ns_of() { echo "$tag-$hostp$1"; }     # also the host-side veth's name
addr_of() { echo "$subnet.$((10 + $1))"; }

# /etc/hosts may be a bind mount (containers), so it is rewritten in place, never replaced by a rename.
hosts_remove_ours() {
    [ -w /etc/hosts ] || return 0
    if grep -q "$mark\$" /etc/hosts; then
        local kept
        kept="$(grep -v "$mark\$" /etc/hosts || true)"
        printf '%s\n' "$kept" >/etc/hosts
    fi
}

cmd_down() {
    need_root
    local ns pid f
    local spaces; spaces="$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$tag-" || true)"
    # Whatever still runs in a node (ranks, hydra proxies) was started through the bed: it ends with the node.
    for ns in $spaces; do
        for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
    done
    if [ -d "$state" ]; then
        # The mount namespaces hold copies of the other nodes' namespace mounts: released first.
        for f in "$state"/*.mnt "$state"/*.uts; do
            [ -e "$f" ] || continue
            umount "$f" 2>/dev/null || true
        done
        umount "$state" 2>/dev/null || true
        rm -rf "$state"
    fi
    for ns in $spaces; do ip netns del "$ns" 2>/dev/null || true; done
    for f in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$tag-$hostp[0-9]" || true); do
        ip link del "$f" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true

    hosts_remove_ours
}

cmd_up() {
    need_root
    local n="${1-}" i ns a
    case "$n" in '' | *[!0-9]* | 0) usage ;; esac
    [ "$n" -le 200 ] || die "up: at most 200 nodes"
    [ ${#tag} -le 12 ] && [ $((${#tag} + ${#hostp} + ${#n} + 1)) -le 15 ] \
        || die "up: interface names $tag-$hostp$n and ${tag}0 must fit in 15 characters (shorten NETBED_TAG or NETBED_HOST)"
    cmd_down
    # The subnet must be free: a route into it that is not the bed's would take its traffic.
    if ip route | grep -q "^$subnet\."; then
        die "subnet $subnet.0/24 is already routed here ($(ip route | grep "^$subnet\." | head -1)); set NETBED_SUBNET"
    fi
    for ((i = 1; i <= n; i++)); do
        if grep -v "$mark\$" /etc/hosts | grep -qw "$hostp$i"; then
            die "/etc/hosts already names a host $hostp$i; set NETBED_HOST"
        fi
    done
    mkdir -p "$state"
    # A mount namespace can be kept in a file only on a mount with private propagation.
    mount --bind "$state" "$state"
    mount --make-private "$state"
    : >"$state/nodes"
    # From here on a failure leaves a half-made bed: take it down again.
    trap 'echo "$self: up failed; removing what was made" >&2; cmd_down' ERR
    ip link add "$bridge" type bridge
    ip addr add "$subnet.1/24" dev "$bridge"
    ip link set "$bridge" up
    for ((i = 1; i <= n; i++)); do
        ns="$(ns_of "$i")"; a="$(addr_of "$i")"
        ip netns add "$ns"
        ip link add "$ns" type veth peer name eth0 netns "$ns"
        ip link set "$ns" master "$bridge"
        ip link set "$ns" up
        ip -n "$ns" addr add "$a/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
        # A UTS namespace kept alive by a bind mount (no holder process), so every command entered gets the name.
        touch "$state/$hostp$i.uts"
        unshare --uts="$state/$hostp$i.uts" hostname "$hostp$i"
        cat /proc/sys/kernel/random/uuid >"$state/$hostp$i.boot_id"
        touch "$state/$hostp$i.mnt"
        unshare --mount="$state/$hostp$i.mnt" --propagation private sh -c \
            "mount --bind '$state/$hostp$i.boot_id' /proc/sys/kernel/random/boot_id && mount -t tmpfs -o size=1g,mode=1777 tmpfs /dev/shm"
        echo "$i $hostp$i $a $ns" >>"$state/nodes"
        printf '%s\t%s %s\n' "$a" "$hostp$i" "$mark" >>/etc/hosts
    done
    trap - ERR
    # The bridge forwards only after its ports have learned; wait until every node answers (bounded).
    for ((i = 1; i <= n; i++)); do
        local ok=0 k out
        for ((k = 0; k < 50; k++)); do
            # A TCP connect to a closed port of the bridge's address: "refused" means the packets went both ways.
            out="$(nsenter --net="/run/netns/$(ns_of "$i")" timeout 1 bash -c "exec 3<>/dev/tcp/$subnet.1/9" 2>&1 || true)"
            case "$out" in *refused*) ok=1; break ;; esac
            sleep 0.1
        done
        [ "$ok" -eq 1 ] || { cmd_down; die "up: node $hostp$i cannot reach the bridge at $subnet.1"; }
    done
    echo "$self: $n node(s) up: $(cut -d' ' -f2,3 "$state/nodes" | tr ' \n' '=,' | sed 's/,$//'); bridge $bridge $subnet.1"
}

# Cable back in. Peers that tried to reach the node during the cut hold FAILED neighbour entries, for which the kernel
# answers "no route to host" at once for a while (UCX then fails MPI_Init: "Destination is unreachable"); they are
# flushed, and the call returns once the node reaches the bridge again (at most 5 s).
cmd_restore() {
    local i="$1" j ns a k out
    ns="$(ns_of "$i")"; a="$(addr_of "$i")"
    ip link set "$ns" up
    ip neigh flush to "$a" dev "$bridge" 2>/dev/null || true
    ip -n "$ns" neigh flush all 2>/dev/null || true
    while read -r j _; do
        [ "$j" = "$i" ] || ip -n "$(ns_of "$j")" neigh flush to "$a" 2>/dev/null || true
    done <"$state/nodes"
    for ((k = 0; k < 50; k++)); do
        out="$(nsenter --net="/run/netns/$ns" timeout 1 bash -c "exec 3<>/dev/tcp/$subnet.1/9" 2>&1 || true)"
        case "$out" in *refused*) return 0 ;; esac
        sleep 0.1
    done
    die "restore: node $hostp$i does not reach the bridge at $subnet.1"
}

cmd_exec() {
    local i; i="$(node_index "${1-}")"; shift
    [ $# -ge 1 ] || usage
    exec nsenter --net="/run/netns/$(ns_of "$i")" --uts="$state/$hostp$i.uts" --mount="$state/$hostp$i.mnt" \
        --wd="$PWD" -- "$@"
}

cmd_mpiexec() {
    [ -f "$state/nodes" ] || die "no test bed is up (run: cluster/netns.sh up N)"
    # -localhost: the proxies in the nodes connect back to mpiexec at the bridge's address (mpiexec's own host
    # name resolves to loopback, which inside a node is the node's own).
    exec mpiexec -launcher ssh -launcher-exec "$here/netns-launch.sh" -localhost "$subnet.1" "$@"
}

has_netem() {
    # Probe on a throwaway dummy device: the qdisc exists only if the kernel was built with it.
    local probe="${tag}-probe" ok=1
    ip link add "$probe" type dummy 2>/dev/null || return 1
    tc qdisc add dev "$probe" root netem delay 1ms 2>/dev/null || ok=0
    ip link del "$probe" 2>/dev/null || true
    [ "$ok" -eq 1 ]
}

# Replaces the root qdisc on both ends of NODE's cable with netem ARGS.
netem_both() {
    local i="$1"; shift
    local ns; ns="$(ns_of "$i")"
    tc qdisc replace dev "$ns" root netem "$@"
    tc -n "$ns" qdisc replace dev eth0 root netem "$@"
}

# Without netem: cluster/netdelay.c, built here on first use (gcc, libnetfilter-queue-dev, libmnl-dev; apt-get
# installs what is missing) into NETBED_BUILD (default .build/netbed in the repository; not committed).
netdelay_bin() {
    local build="${NETBED_BUILD:-$(dirname "$here")/.build/netbed}" src="$here/netdelay.c"
    local bin="$build/netdelay"
    if [ -x "$bin" ] && [ "$bin" -nt "$src" ]; then echo "$bin"; return; fi
    command -v gcc >/dev/null || die "delay: no netem qdisc and no gcc to build cluster/netdelay.c"
    if [ ! -f /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || [ ! -f /usr/include/libmnl/libmnl.h ]; then
        command -v apt-get >/dev/null || die "delay: no netem qdisc and no libnetfilter-queue-dev/libmnl-dev (no apt-get to install them)"
        timeout 300 apt-get install -y -q libnetfilter-queue-dev libmnl-dev >/dev/null 2>&1 \
            || die "delay: apt-get install libnetfilter-queue-dev libmnl-dev failed"
    fi
    mkdir -p "$build"
    gcc -O2 -Wall -o "$bin.tmp" "$src" -lnetfilter_queue -lmnl || die "delay: building $src failed"
    mv "$bin.tmp" "$bin"
    echo "$bin"
}

# NODE's ingress through an NFQUEUE held by netdelay: iptables (nf_tables backend, the xt NFQUEUE target through
# nft_compat; iptables-legacy if that fails) sends every packet arriving on eth0 to queue 1 in the node's own
# network namespace; netdelay accepts each MS ms after it arrived. --queue-bypass: with no netdelay listening the
# packets pass undelayed instead of being dropped.
# Ingress, not egress: a packet held on the sender's own way out (mangle POSTROUTING) stays charged to its TCP
# socket (measured: a 2-node prune's three 0.5 MB reductions took 2.2-4.7 s each with node 2's egress delayed
# 50 ms, 0.3-0.5 s with its ingress delayed; this fits TCP small queues, which netem avoids by orphaning the packets
# it holds, not checked further). Arriving packets have crossed the veth and belong to no socket. The kernel's
# receive timestamp is set before the hold: read round trips with `ping -U`.
nfq_rule=(-t mangle -A PREROUTING -i eth0 -j NFQUEUE --queue-num 1 --queue-bypass)
netdelay_start() {
    local i="$1" ms="$2" ns bin ipt k
    ns="$(ns_of "$i")"
    bin="$(netdelay_bin)"
    netdelay_stop "$i"
    command -v iptables >/dev/null || command -v iptables-legacy >/dev/null \
        || die "delay: no netem qdisc and no iptables (apt-get install iptables)"
    # setsid: a process group of its own, apart from the caller's (a Ctrl-C of the caller does not end it half-way).
    ip netns exec "$ns" setsid "$bin" 1 "$ms" >"$state/$hostp$i.netdelay.out" 2>"$state/$hostp$i.netdelay.log" &
    echo $! >"$state/$hostp$i.netdelay.pid"
    for ((k = 0; k < 50; k++)); do
        grep -q '^ready$' "$state/$hostp$i.netdelay.out" 2>/dev/null && break
        kill -0 "$(cat "$state/$hostp$i.netdelay.pid")" 2>/dev/null || break
        sleep 0.05
    done
    grep -q '^ready$' "$state/$hostp$i.netdelay.out" 2>/dev/null \
        || { netdelay_stop "$i"; die "delay: netdelay did not start: $(cat "$state/$hostp$i.netdelay.log")"; }
    for ipt in iptables iptables-legacy; do
        command -v "$ipt" >/dev/null || continue
        if ip netns exec "$ns" "$ipt" "${nfq_rule[@]}" 2>/dev/null; then
            echo "$ipt" >"$state/$hostp$i.netdelay.ipt"
            return 0
        fi
    done
    netdelay_stop "$i"
    die "delay: neither iptables nor iptables-legacy could add the NFQUEUE rule (CONFIG_NETFILTER_XT_TARGET_NFQUEUE)"
}
# The rule first (packets then pass undelayed), then netdelay: on SIGTERM it accepts what it still holds.
netdelay_stop() {
    local i="$1" ns pid k
    ns="$(ns_of "$i")"
    if [ -f "$state/$hostp$i.netdelay.ipt" ]; then
        ip netns exec "$ns" "$(cat "$state/$hostp$i.netdelay.ipt")" "${nfq_rule[@]/#-A/-D}" 2>/dev/null || true
        rm -f "$state/$hostp$i.netdelay.ipt"
    fi
    if [ -f "$state/$hostp$i.netdelay.pid" ]; then
        pid="$(cat "$state/$hostp$i.netdelay.pid")"
        kill "$pid" 2>/dev/null || true
        for ((k = 0; k < 40; k++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        rm -f "$state/$hostp$i.netdelay.pid"
    fi
}

cmd_delay() {
    need_root
    local i ms="${2-}"; i="$(node_index "${1-}")"
    case "$ms" in '' | *[!0-9.]*) die "delay: MS must be a number of milliseconds, got '$ms'" ;; esac
    awk -v m="$ms" 'BEGIN { exit !(m >= 0 && m <= 60000) }' || die "delay: MS must be within 0..60000, got '$ms'"
    if command -v tc >/dev/null && has_netem; then
        tc qdisc replace dev "$(ns_of "$i")" root netem delay "${ms}ms"   # the bridge port's egress: into NODE
        return
    fi
    netdelay_start "$i" "$ms"
}

cmd_loss() {
    need_root
    local i pct="${2-}"; i="$(node_index "${1-}")"
    case "$pct" in '' | *[!0-9.]*) die "loss: PCT must be a percentage, got '$pct'" ;; esac
    awk -v p="$pct" 'BEGIN { exit !(p >= 0 && p <= 100) }' || die "loss: PCT must be within 0..100, got '$pct'"
    if command -v tc >/dev/null && has_netem; then
        netem_both "$i" loss "${pct}%"
        return
    fi
    # Without netem: nftables inside the node drops a random PCT % (per mille resolution) of what enters and leaves.
    command -v nft >/dev/null || die "loss: no netem qdisc (CONFIG_NET_SCH_NETEM) and no nft (apt-get install nftables)"
    local permille; permille="$(awk -v p="$pct" 'BEGIN { printf "%d", p * 10 + 0.5 }')"
    ip netns exec "$(ns_of "$i")" nft -f - <<EOF
table inet netbed
delete table inet netbed
table inet netbed {
    chain input { type filter hook input priority 0; numgen random mod 1000 < $permille drop; }
    chain output { type filter hook output priority 0; numgen random mod 1000 < $permille drop; }
}
EOF
}

cmd_clear() {
    need_root
    local i ns; i="$(node_index "${1-}")"; ns="$(ns_of "$i")"
    tc qdisc del dev "$ns" root 2>/dev/null || true
    tc -n "$ns" qdisc del dev eth0 root 2>/dev/null || true
    if command -v nft >/dev/null; then ip netns exec "$ns" nft delete table inet netbed 2>/dev/null || true; fi
    netdelay_stop "$i"
}

# The node's view: what its eth0 received and sent = what the host-side veth sent and received.
cmd_bytes() {
    local i ns; i="$(node_index "${1-}")"; ns="$(ns_of "$i")"
    echo "$(cat "/sys/class/net/$ns/statistics/tx_bytes") $(cat "/sys/class/net/$ns/statistics/rx_bytes")"
}

cmd_status() {
    [ -f "$state/nodes" ] || { echo "$self: no test bed is up"; return 0; }
    local i name a ns link q rxtx
    echo "bridge $bridge $subnet.1/24"
    while read -r i name a ns; do
        link="$(cat "/sys/class/net/$ns/operstate" 2>/dev/null || echo gone)"
        q="$(tc qdisc show dev "$ns" root 2>/dev/null | grep -o 'netem.*' || true)"
        [ -f "$state/$name.netdelay.pid" ] && q="${q:+$q, }netdelay $(ip netns exec "$ns" cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null | awk '{print "queue " $1 ", " $3 " waiting"}')"
        rxtx="$(cmd_bytes "$i")"
        echo "$name $a ns=$ns uts=$(nsenter --uts="$state/$name.uts" hostname) port=$link${q:+ shaping: $q} rx=${rxtx% *} tx=${rxtx#* }"
    done <"$state/nodes"
}

case "${1-}" in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    exec) shift; need_root; cmd_exec "$@" ;;
    mpiexec) shift; cmd_mpiexec "$@" ;;
    cut) need_root; i="$(node_index "${2-}")"; ip link set "$(ns_of "$i")" down ;;
    restore) need_root; i="$(node_index "${2-}")"; cmd_restore "$i" ;;
    delay) shift; cmd_delay "$@" ;;
    loss) shift; cmd_loss "$@" ;;
    clear) shift; cmd_clear "$@" ;;
    bytes) shift; i="$(node_index "${1-}")"; cmd_bytes "$i" ;;
    addr) i="$(node_index "${2-}")"; addr_of "$i" ;;
    *) usage ;;
esac
