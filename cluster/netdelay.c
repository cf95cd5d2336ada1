/*
 * netdelay: a constant one-way delay without netem. Reads packets from an NFQUEUE and gives each its NF_ACCEPT
 * verdict MS milliseconds after it arrived here. cluster/netns.sh builds it (gcc, libnetfilter-queue, libmnl) and
 * runs it inside a node's network namespace behind
 *     iptables -t mangle -A PREROUTING -i eth0 -j NFQUEUE --queue-num N --queue-bypass
 * so everything the node receives on its cable waits MS ms (netns.sh says why ingress and not egress).
 *
 *   netdelay QUEUE_NUM MS [MAXLEN]
 *
 * The delay is the same for every packet, so the packets waiting form a FIFO in arrival order and the verdicts go out
 * in that order (the order on the wire is kept). Only the packet metadata is copied to user space (NFQNL_COPY_META),
 * GSO packets are queued whole (NFQA_CFG_F_GSO). The kernel queue holds MAXLEN packets (default 65536); with
 * NFQA_CFG_F_FAIL_OPEN a packet that finds it full is accepted at once, undelayed, instead of dropped. When the
 * receive buffer of the netlink socket overflows (ENOBUFS) the packets whose messages were lost stay in the kernel
 * queue without a verdict; that is counted and reported on exit (it did not happen in the measured runs).
 *
 * "ready" on stdout once the queue is bound. SIGTERM/SIGINT: every waiting packet is accepted at once, then exit 0.
 * Exit 1 on a setup error (message on stderr).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct mnl_socket *nl;
static unsigned queue_num;
static uint32_t *ids;          /* FIFO of packet ids waiting for their verdict */
static uint64_t *due_ns;       /* CLOCK_MONOTONIC time each one is due */
static size_t cap, head, count;
static uint64_t delay_ns;
static unsigned long n_in, n_out, n_overflow, n_enobufs;
static volatile sig_atomic_t stop;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "netdelay: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void send_verdict(uint32_t id) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT, queue_num);
    nfq_nlmsg_verdict_put(nlh, id, NF_ACCEPT);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) die("verdict");
    n_out++;
}

static int on_packet(const struct nlmsghdr *nlh, void *data) {
    (void)data;
    struct nlattr *attr[NFQA_MAX + 1] = {0};
    if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) return MNL_CB_OK;
    struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
    uint32_t id = ntohl(ph->packet_id);
    n_in++;
    if (count == cap) {   /* cannot happen with cap == the kernel's MAXLEN; accept rather than lose it */
        n_overflow++;
        send_verdict(id);
        return MNL_CB_OK;
    }
    size_t k = (head + count) % cap;
    ids[k] = id;
    due_ns[k] = now_ns() + delay_ns;
    count++;
    return MNL_CB_OK;
}

static void release_due(int all) {
    uint64_t t = now_ns();
    while (count > 0 && (all || due_ns[head] <= t)) {
        send_verdict(ids[head]);
        head = (head + 1) % cap;
        count--;
    }
}

static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: netdelay QUEUE_NUM MS [MAXLEN]\n");
        return 2;
    }
    queue_num = (unsigned)strtoul(argv[1], NULL, 10);
    double ms = strtod(argv[2], NULL);
    if (!(ms >= 0 && ms <= 60000)) { fprintf(stderr, "netdelay: MS must be within 0..60000\n"); return 2; }
    delay_ns = (uint64_t)(ms * 1e6 + 0.5);
    uint32_t maxlen = argc == 4 ? (uint32_t)strtoul(argv[3], NULL, 10) : 65536;
    if (maxlen == 0) { fprintf(stderr, "netdelay: MAXLEN must be positive\n"); return 2; }
    cap = maxlen;
    ids = calloc(cap, sizeof *ids);
    due_ns = calloc(cap, sizeof *due_ns);
    if (!ids || !due_ns) die("calloc");

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    nl = mnl_socket_open(NETLINK_NETFILTER);
    if (!nl) die("mnl_socket_open");
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) die("mnl_socket_bind");
    unsigned portid = mnl_socket_get_portid(nl);
    int fd = mnl_socket_get_fd(nl);
    int rcvbuf = 64 << 20;   /* room for a burst of metadata messages */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);

    char buf[MNL_SOCKET_BUFFER_SIZE > 65536 ? MNL_SOCKET_BUFFER_SIZE : 65536];
    struct nlmsghdr *nlh;
    nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_num);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) die("bind queue");
    nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_num);
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0);
    mnl_attr_put_u32(nlh, NFQA_CFG_QUEUE_MAXLEN, htonl(maxlen));
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO));
    nlh->nlmsg_flags |= NLM_F_ACK;
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) die("queue params");
    /* The acknowledgement says whether the kernel took the parameters (a second listener on the queue: EBUSY). */
    ssize_t r = mnl_socket_recvfrom(nl, buf, sizeof buf);
    if (r < 0) die("queue params ack");
    if (mnl_cb_run(buf, (size_t)r, 0, portid, NULL, NULL) < 0) die("queue params");

    printf("ready\n");
    fflush(stdout);

    while (!stop) {
        int timeout = -1;
        if (count > 0) {
            uint64_t t = now_ns(), d = due_ns[head];
            timeout = d <= t ? 0 : (int)((d - t + 999999) / 1000000);
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, timeout);
        if (pr < 0 && errno != EINTR) die("poll");
        if (pr > 0 && (p.revents & POLLIN)) {
            r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (r < 0) {
                if (errno == ENOBUFS) n_enobufs++;
                else if (errno != EAGAIN && errno != EINTR) die("recv");
            } else if (mnl_cb_run(buf, (size_t)r, 0, portid, on_packet, NULL) < 0 && errno != EINTR) {
                die("parse");
            }
        }
        release_due(0);
    }
    release_due(1);
    fprintf(stderr, "netdelay: queue %u, %.3f ms: %lu packets in, %lu verdicts, %lu accepted early (ring full), "
                    "%lu receive-buffer overflows\n", queue_num, ms, n_in, n_out, n_overflow, n_enobufs);
    mnl_socket_close(nl);
    return 0;
}
