/* Test guest: the `net` workload: a polled virtio-net driver that answers
 * ARP and ICMP echo, and sends or receives numbered UDP test streams. */
#include "guest/work_net.h"

#define NET_F_MAC (1ull << 5)
#define NET_F_STATUS (1ull << 16)
#define NET_S_LINK_UP 1
#define NET_RXQ 0
#define NET_TXQ 1
#define NET_BATCH 32 /* frames between two kicks or rx polls */
#define NET_DEFAULT_PORT 9000
#define NET_DEFAULT_SECS 10
#define NET_DEFAULT_LEN 64
#define NET_DEFAULT_COUNT 1000
#define NET_MAX_SECS 86400
#define NET_COUNT_MAX (1ul << 24)
#define NET_ARP_RETRY_MS 200
#define NET_DRAIN_MS 2000 /* udpsend: wait for the device to take all */

static const char *const mode_names[] = { "responder", "udpsend", "udprecv",
					  "badtx" };

static uint64_t now_ms(const struct net *n)
{
	return guest_rdtsc() / n->u->tsc_khz;
}

/* "A.B.C.D" into a host-order address; 0 or -1. */
static int parse_ip(const char *s, size_t len, uint32_t *out)
{
	uint32_t ip = 0;
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		uint32_t v = 0;
		size_t start = i;

		while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 3)
			v = v * 10 + (uint32_t)(s[i++] - '0');
		if (i == start || v > 255 ||
		    (part < 3 && (i >= len || s[i++] != '.')))
			return -1;
		ip = ip << 8 | v;
	}
	if (i != len)
		return -1;
	*out = ip;
	return 0;
}

static int arg_ip(struct net *n, const char *key, uint32_t *out, int *given)
{
	const struct user_args *a = &n->u->args;

	*given = 0;
	for (unsigned i = 0; i < a->nparams; i++) {
		if (!user_streq(a->p[i].key, a->p[i].klen, key))
			continue;
		if (parse_ip(a->p[i].val, a->p[i].vlen, out)) {
			user_printf("canopy-testguest: workload 'net': %s=%.*s "
				    "is not an IPv4 address A.B.C.D\n",
				    key, (int)a->p[i].vlen, a->p[i].val);
			return -1;
		}
		*given = 1;
	}
	return 0;
}

static int parse_mode(struct net *n)
{
	const struct user_args *a = &n->u->args;

	n->mode = NET_RESPONDER;
	for (unsigned i = 0; i < a->nparams; i++) {
		const struct user_param *p = &a->p[i];

		if (!user_streq(p->key, p->klen, "mode"))
			continue;
		for (unsigned k = 0; k < 4; k++)
			if (user_streq(p->val, p->vlen, mode_names[k])) {
				n->mode = (enum net_mode)k;
				return 0;
			}
		user_printf("canopy-testguest: workload 'net': unknown mode "
			    "'%.*s'\n",
			    (int)p->vlen, p->val);
		return -1;
	}
	return 0;
}

static int parse_args(struct net *n)
{
	static const char *const keys[] = { "ip",   "mode",  "peer",
					    "port", "count", "secs",
					    "len",  "dev",   NULL };
	struct user_ctx *u = n->u;
	int have_ip, have_peer;

	if (user_args_check(u, keys, 0) || parse_mode(n) ||
	    arg_ip(n, "ip", &n->ip, &have_ip) ||
	    arg_ip(n, "peer", &n->peer, &have_peer) ||
	    user_arg_u64(u, "port", NET_DEFAULT_PORT, &n->port) ||
	    user_arg_u64(u, "count", NET_DEFAULT_COUNT, &n->count) ||
	    user_arg_u64(u, "secs", NET_DEFAULT_SECS, &n->secs) ||
	    user_arg_u64(u, "len", NET_DEFAULT_LEN, &n->len) ||
	    user_arg_u64(u, "dev", 0, &n->dev) || user_need_tsc(u))
		return -1;
	if (!have_ip || (n->mode == NET_UDPSEND && !have_peer)) {
		user_printf("canopy-testguest: workload 'net': needs ip=A.B.C.D"
			    "%s\n",
			    n->mode == NET_UDPSEND ? " and peer=A.B.C.D" : "");
		return -1;
	}
	if (!n->port || n->port > 65535 || !n->count ||
	    n->count > NET_COUNT_MAX || !n->secs || n->secs > NET_MAX_SECS ||
	    n->len < NET_PAYLOAD_MIN || n->len > NET_PAYLOAD_MAX ||
	    n->dev > 255) {
		user_printf("canopy-testguest: workload 'net': need port in "
			    "1..65535, count in 1..%lu, secs in 1..%d, len in "
			    "%d..%d, dev up to 255\n",
			    NET_COUNT_MAX, NET_MAX_SECS, NET_PAYLOAD_MIN,
			    NET_PAYLOAD_MAX);
		return -1;
	}
	return 0;
}

/* ---- the driver ------------------------------------------------------- */

static int rx_post(struct net *n, unsigned slot)
{
	struct user_virtio_buf b = { (uint64_t)n->rxbuf[slot], NET_BUF, 1 };
	uint16_t head;
	int r = user_virtio_add(&n->v, NET_RXQ, &b, 1, &head);

	if (!r)
		n->rx_slot[head] = (uint16_t)slot;
	return r;
}

static int buffers_alloc(struct net *n)
{
	n->nrx = n->v.q[NET_RXQ].size;
	n->ntx = n->v.q[NET_TXQ].size;
	for (unsigned i = 0; i < n->nrx; i++) {
		n->rxbuf[i] = user_mem_alloc(&n->mem, NET_BUF, NET_BUF);
		if (!n->rxbuf[i] || rx_post(n, i))
			return -USER_ENOMEM;
	}
	for (unsigned i = 0; i < n->ntx; i++) {
		n->txbuf[i] = user_mem_alloc(&n->mem, NET_BUF, NET_BUF);
		if (!n->txbuf[i])
			return -USER_ENOMEM;
		n->tx_free[n->ntx_free++] = (uint16_t)i;
	}
	user_virtio_kick(&n->v, NET_RXQ);
	return 0;
}

static int net_open(struct net *n)
{
	const struct guest_boot *boot = n->u->boot;
	int r = user_pci_init(&n->pci, boot);

	if (r) {
		user_printf("net: no PCI ECAM (ACPI MCFG) reachable\n");
		return r;
	}
	r = user_mem_init(&n->mem, boot);
	if (r) {
		user_printf("net: no free RAM after the guest image\n");
		return r;
	}
	r = user_virtio_open(&n->v, &n->pci, &n->mem, VIRTIO_ID_NET,
			     (unsigned)n->dev, n->u->tsc_khz, "net");
	if (!r)
		r = user_virtio_negotiate(&n->v, NET_F_MAC | NET_F_STATUS);
	if (!r && !(n->v.features & NET_F_MAC)) {
		user_printf("net: the device offers no MAC address\n");
		r = -USER_ENOTSUP;
	}
	if (!r)
		r = user_virtio_queue(&n->v, NET_RXQ, NET_QSIZE);
	if (!r)
		r = user_virtio_queue(&n->v, NET_TXQ, NET_QSIZE);
	if (!r)
		r = user_virtio_start(&n->v);
	if (!r && (r = buffers_alloc(n)) != 0)
		user_printf("net: no free RAM for the rx and tx buffers\n");
	return r;
}

/* Link state and MAC from the device configuration. */
static void identify(struct net *n)
{
	uint32_t lo = user_virtio_cfg_read32(&n->v, 0);
	uint32_t hi = user_virtio_cfg_read32(&n->v, 4);
	int up = !(n->v.features & NET_F_STATUS) ||
		 ((hi >> 16) & NET_S_LINK_UP);
	uint8_t *m = n->mac;

	memcpy(m, &lo, 4);
	memcpy(m + 4, &hi, 2);
	user_printf("net: mac %02x:%02x:%02x:%02x:%02x:%02x link %s ip "
		    "%u.%u.%u.%u mode %s\n",
		    m[0], m[1], m[2], m[3], m[4], m[5], up ? "up" : "down",
		    n->ip >> 24, (n->ip >> 16) & 255, (n->ip >> 8) & 255,
		    n->ip & 255, mode_names[n->mode]);
}

/* Takes back every frame the device has sent. -USER_EPROTO or 0. */
static int tx_reap(struct net *n)
{
	uint16_t head;
	uint32_t len;
	int r;

	while ((r = user_virtio_reap(&n->v, NET_TXQ, &head, &len)) == 1)
		n->tx_free[n->ntx_free++] = n->tx_slot[head];
	return r;
}

uint8_t *net_tx_get(struct net *n)
{
	if (!n->ntx_free && tx_reap(n))
		return 0;
	if (!n->ntx_free)
		return 0;
	n->tx_cur = n->tx_free[--n->ntx_free];
	memset(n->txbuf[n->tx_cur], 0, NET_HDR);
	return n->txbuf[n->tx_cur] + NET_HDR;
}

int net_tx_send(struct net *n, unsigned len)
{
	struct user_virtio_buf b = { (uint64_t)n->txbuf[n->tx_cur],
				     NET_HDR + len, 0 };
	uint16_t head;
	int r = user_virtio_add(&n->v, NET_TXQ, &b, 1, &head);

	if (r) {
		n->tx_free[n->ntx_free++] = n->tx_cur;
		return r;
	}
	n->tx_slot[head] = n->tx_cur;
	if (++n->tx_pending >= NET_BATCH)
		net_tx_flush(n);
	return 0;
}

void net_tx_flush(struct net *n)
{
	if (!n->tx_pending)
		return;
	user_virtio_kick(&n->v, NET_TXQ);
	n->tx_pending = 0;
}

/* Did the device stop (DEVICE_NEEDS_RESET or FAILED)? Looked at once a
 * millisecond at most: each look is an MMIO exit. */
static int device_stopped(struct net *n)
{
	uint64_t t = guest_rdtsc();
	uint8_t st;

	if (t - n->t_status < n->u->tsc_khz)
		return 0;
	n->t_status = t;
	st = user_virtio_status(&n->v);
	if (!(st & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)))
		return 0;
	user_printf("net: device status 0x%x (DEVICE_NEEDS_RESET)\n", st);
	return 1;
}

/* Handles up to NET_BATCH received frames; -USER_EIO when the device
 * stopped, -USER_EPROTO for a bad used entry. */
static int net_poll(struct net *n)
{
	unsigned done = 0;
	uint16_t head;
	uint32_t len;
	int r = 0;

	while (done < NET_BATCH &&
	       (r = user_virtio_reap(&n->v, NET_RXQ, &head, &len)) == 1) {
		unsigned slot = n->rx_slot[head];

		if (len > NET_HDR && len <= NET_BUF)
			net_frame(n, n->rxbuf[slot] + NET_HDR, len - NET_HDR);
		else
			n->runts++;
		if (rx_post(n, slot))
			return -USER_EPROTO;
		done++;
	}
	if (done)
		user_virtio_kick(&n->v, NET_RXQ);
	net_tx_flush(n);
	if (r < 0)
		return r;
	if (!done && device_stopped(n))
		return -USER_EIO;
	return tx_reap(n);
}

/* ---- the modes -------------------------------------------------------- */

static void rate(const struct net *n, uint64_t frames, uint64_t bytes,
		 uint64_t ticks, char *out, size_t size)
{
	uint64_t k = n->u->tsc_khz, t = ticks ? ticks : 1;
	uint64_t tenths = t / (k * 100), mb10 = bytes * k / (t * 100);

	user_snprintf(out, size, "secs %lu.%lu pps %lu mbps %lu.%lu",
		      tenths / 10, tenths % 10, frames * k * 1000 / t,
		      mb10 / 10, mb10 % 10);
}

static int run_responder(struct net *n)
{
	uint64_t end = now_ms(n) + n->secs * 1000;

	while (now_ms(n) < end)
		if (net_poll(n))
			return GUEST_EXIT_FAIL;
	user_printf("net: responder secs %lu arp %lu icmp %lu\n", n->secs,
		    n->arp_replies, n->icmp_replies);
	return GUEST_EXIT_OK;
}

/* ARP for the peer until it answers or the time is up. */
static int resolve(struct net *n, uint64_t end)
{
	uint64_t next = 0;

	while (!n->peer_known) {
		uint64_t t = now_ms(n);

		if (t >= end) {
			user_printf("net: no ARP reply from %u.%u.%u.%u after "
				    "%lu s\n",
				    n->peer >> 24, (n->peer >> 16) & 255,
				    (n->peer >> 8) & 255, n->peer & 255,
				    n->secs);
			return -USER_ETIMEDOUT;
		}
		if (t >= next) {
			net_arp_request(n);
			net_tx_flush(n);
			next = t + NET_ARP_RETRY_MS;
		}
		if (net_poll(n))
			return -USER_EIO;
	}
	user_printf(
		"net: arp %u.%u.%u.%u is at %02x:%02x:%02x:%02x:%02x:%02x\n",
		n->peer >> 24, (n->peer >> 16) & 255, (n->peer >> 8) & 255,
		n->peer & 255, n->peer_mac[0], n->peer_mac[1], n->peer_mac[2],
		n->peer_mac[3], n->peer_mac[4], n->peer_mac[5]);
	return 0;
}

static int run_udpsend(struct net *n)
{
	uint64_t end = now_ms(n) + n->secs * 1000, t0, seq = 0, drain;
	char line[96];

	if (resolve(n, end))
		return GUEST_EXIT_FAIL;
	t0 = guest_rdtsc();
	while (seq < n->count && now_ms(n) < end) {
		if (net_udp_send(n, (uint32_t)seq) == 0)
			seq++;
		else if (net_poll(n)) /* no free buffer: let the device work */
			return GUEST_EXIT_FAIL;
		if (seq % NET_BATCH == 0 && net_poll(n))
			return GUEST_EXIT_FAIL;
	}
	net_tx_flush(n);
	drain = now_ms(n) + NET_DRAIN_MS;
	while (n->ntx_free < n->ntx && now_ms(n) < drain)
		if (net_poll(n))
			return GUEST_EXIT_FAIL;
	rate(n, seq, seq * n->len, guest_rdtsc() - t0, line, sizeof(line));
	user_printf("net: udpsend sent %lu bytes %lu %s\n", seq, seq * n->len,
		    line);
	if (seq < n->count || n->ntx_free < n->ntx) {
		user_printf("net: udpsend timed out after %lu of %lu "
			    "datagrams (%u still queued)\n",
			    seq, n->count, n->ntx - n->ntx_free);
		return GUEST_EXIT_FAIL;
	}
	return GUEST_EXIT_OK;
}

static int run_udprecv(struct net *n)
{
	uint64_t end = now_ms(n) + n->secs * 1000;
	char line[96];

	n->seen = user_mem_alloc(&n->mem, (n->count + 7) / 8, 8);
	if (!n->seen) {
		user_printf("net: no free RAM to track %lu datagrams\n",
			    n->count);
		return GUEST_EXIT_USAGE;
	}
	while (n->got < n->count && now_ms(n) < end)
		if (net_poll(n))
			return GUEST_EXIT_FAIL;
	rate(n, n->got, n->got_bytes, n->t_last - n->t_first, line,
	     sizeof(line));
	user_printf("net: udprecv got %lu lost %lu bad %lu %s\n", n->got,
		    n->count - n->got, n->bad, line);
	return n->got == n->count && !n->bad ? GUEST_EXIT_OK : GUEST_EXIT_FAIL;
}

/* A transmit chain of 4 bytes (no room for the header): the device must
 * stop (DEVICE_NEEDS_RESET); then reset it, start again and answer. */
static int run_badtx(struct net *n)
{
	struct user_virtio_buf b = { (uint64_t)n->txbuf[0], 4, 0 };
	uint64_t end = now_ms(n) + 2000;
	uint16_t head;
	uint8_t st = 0;

	if (user_virtio_add(&n->v, NET_TXQ, &b, 1, &head))
		return GUEST_EXIT_FAIL;
	user_virtio_kick(&n->v, NET_TXQ);
	while (now_ms(n) < end &&
	       !((st = user_virtio_status(&n->v)) & VIRTIO_S_NEEDS_RESET))
		user_relax();
	user_printf("net: badtx device status 0x%x\n", st);
	if (!(st & VIRTIO_S_NEEDS_RESET))
		return GUEST_EXIT_FAIL;
	n->ntx_free = n->tx_pending = 0;
	if (net_open(n)) /* resets the device, fresh rings */
		return GUEST_EXIT_FAIL;
	identify(n);
	return run_responder(n);
}

/*
 * `net,ip=A.B.C.D[,mode=responder|udpsend|udprecv][,peer=IP][,port=N]
 * [,count=N][,secs=N][,len=N][,dev=I]` (docs/test-guest.md).
 */
int work_net(struct user_ctx *u)
{
	struct net n;

	memset(&n, 0, sizeof(n));
	n.u = u;
	if (parse_args(&n))
		return GUEST_EXIT_USAGE;
	if (net_open(&n))
		return GUEST_EXIT_FAIL;
	identify(&n);
	if (n.mode == NET_UDPSEND)
		return run_udpsend(&n);
	if (n.mode == NET_BADTX)
		return run_badtx(&n);
	if (n.mode == NET_UDPRECV)
		return run_udprecv(&n);
	return run_responder(&n);
}
