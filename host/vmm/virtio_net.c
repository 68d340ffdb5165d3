/* virtio-net device model: rx/tx over a net_backend on the device's worker
 * thread, MAC and link status in the configuration (see virtio_net.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/vmm/virtio_net.h"
#include "host/vmm/virtio_pci.h"
#include "lib/buf.h"
#include "lib/log.h"

/* Feature bits (5.1.3): only these; no checksum or segmentation offload. */
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1
/* Configuration: mac[6], status, max_virtqueue_pairs, mtu (unused). */
#define VNET_CONFIG_SIZE 12u
#define VNET_RXQ 0
#define VNET_TXQ 1
#define VNET_QUEUE_SIZE 256
/* Frames per callback before others get a turn. */
#define VNET_BUDGET 64u
/* Catches the rest of a frame too big for the guest's buffer (TAP has no
 * MSG_TRUNC): anything landing here means "too big". */
#define VNET_SCRATCH (NET_FRAME_MAX + 1)
/* Most iovecs in one readv/recvmsg (the kernel's UIO_MAXIOV). */
#define VNET_IOV_MAX 1024
/* Class: network, Ethernet. */
#define PCI_CLASS_NET_ETHERNET 0x020000
#define VNET_STATE_VERSION 1

struct vnet {
	struct virtio_dev *vd; /* NULL in unit tests */
	struct net_backend *b;
	uint8_t mac[NET_MAC_LEN];
	uint8_t config[VNET_CONFIG_SIZE];
	int watch, watch_out; /* virtio_dev_watch indices: fd, out_fd */
	int active; /* DRIVER_OK and not broken: poll the backend */
	int dead; /* the backend failed: link down until the VMM exits */
	int rx_wait; /* no guest rx buffer: POLLIN off until an rx kick */
	int tx_wait; /* backend full: POLLOUT on, tx kicks ignored */
	struct virtq_req req; /* worker thread only */
	struct iovec iov[VIRTQ_MAX_SEGS + 1];
	uint8_t scratch[VNET_SCRATCH];
	_Atomic uint64_t rx_packets, rx_bytes, rx_too_big, rx_runts, rx_errors,
		tx_packets, tx_bytes, tx_bad_len, tx_errors, tx_full, rx_no_buf;
};

/* Saved state: the MAC and the counters (queue indices are the
 * transport's). */
struct vnet_state {
	uint32_t version;
	uint8_t mac[NET_MAC_LEN];
	uint8_t pad[2];
	struct vnet_stats st;
};

static void build_config(struct vnet *n)
{
	uint16_t status = VIRTIO_NET_S_LINK_UP, pairs = 1, mtu = 1500;

	memcpy(n->config, n->mac, NET_MAC_LEN);
	memcpy(n->config + 6, &status, 2);
	memcpy(n->config + 8, &pairs, 2);
	memcpy(n->config + 10, &mtu, 2);
}

int vnet_create(struct net_backend *b, const uint8_t mac[NET_MAC_LEN],
		struct vnet **out)
{
	struct vnet *n = calloc(1, sizeof(*n));

	if (!n) {
		b->ops->close(b);
		return -ENOMEM;
	}
	n->b = b;
	n->watch = n->watch_out = -1;
	memcpy(n->mac, mac, NET_MAC_LEN);
	build_config(n);
	*out = n;
	return 0;
}

void vnet_free(struct vnet *n)
{
	if (!n)
		return;
	n->b->ops->close(n->b);
	free(n);
}

void vnet_stats_get(const struct vnet *n, struct vnet_stats *o)
{
	o->rx_packets = n->rx_packets;
	o->rx_bytes = n->rx_bytes;
	o->rx_too_big = n->rx_too_big;
	o->rx_runts = n->rx_runts;
	o->rx_errors = n->rx_errors;
	o->tx_packets = n->tx_packets;
	o->tx_bytes = n->tx_bytes;
	o->tx_bad_len = n->tx_bad_len;
	o->tx_errors = n->tx_errors;
	o->tx_full = n->tx_full;
	o->rx_no_buf = n->rx_no_buf;
}

/* One tx chain: 1 sent or dropped (pushed), VNET_BLOCKED, -EINVAL. */
static int tx_one(struct vnet *n, struct virtq *q)
{
	const struct virtq_req *r = &n->req;
	uint64_t flen;
	ssize_t got;
	int k;

	if (r->nw || r->rlen < NET_HDR_LEN)
		return -EINVAL; /* no header, or buffers for the device */
	flen = r->rlen - NET_HDR_LEN;
	if (flen < NET_ETH_MIN || flen > NET_FRAME_MAX) {
		n->tx_bad_len++;
		virtq_push(q, r->head, 0);
		return 1;
	}
	k = virtq_req_slice(r, 0, r->nr, NET_HDR_LEN, flen, n->iov);
	got = n->b->ops->send(n->b, n->iov, k);
	if (got == -EAGAIN || got == -ENOBUFS) {
		n->tx_full++;
		virtq_unpop(q);
		return VNET_BLOCKED;
	}
	if (got < 0 || (uint64_t)got != flen) {
		n->tx_errors++;
	} else {
		n->tx_packets++;
		n->tx_bytes += flen;
	}
	virtq_push(q, r->head, 0);
	return 1;
}

int vnet_tx(struct vnet *n, struct virtq *q, unsigned budget, unsigned *pushed)
{
	*pushed = 0;
	while (*pushed < budget) {
		int rc = virtq_pop(q, &n->req);

		if (rc <= 0)
			return rc;
		rc = tx_one(n, q);
		if (rc != 1)
			return rc;
		(*pushed)++;
	}
	return VNET_MORE;
}

/* The backend wrote len bytes over iov[0..k): for the dirty log. */
static void mark(const struct virtq_req *r, const struct iovec *iov, int k,
		 uint64_t len)
{
	for (int i = 0; i < k && len; i++) {
		uint64_t l = CN_MIN(iov[i].iov_len, len);

		gmem_mark(r->mem, iov[i].iov_base, l);
		len -= l;
	}
}

/* Receive into the chain in n->req: 1 delivered (pushed), 0 nothing to
 * receive, 2 dropped (the chain may take the next frame). */
static int rx_into(struct vnet *n, struct virtq *q)
{
	const struct virtq_req *r = &n->req;
	uint64_t cap = 0;
	uint8_t hdr[NET_HDR_LEN] = { 0 };
	uint16_t nbuf = 1; /* num_buffers: one chain per frame */
	int k = virtq_req_slice(r, r->nr, r->nw, NET_HDR_LEN,
				r->wlen - NET_HDR_LEN, n->iov);
	ssize_t got;

	/* One system call takes at most VNET_IOV_MAX iovecs, the scratch
	 * one included: a chain of more segments holds less. */
	if (k > VNET_IOV_MAX - 1)
		k = VNET_IOV_MAX - 1;
	for (int i = 0; i < k; i++)
		cap += n->iov[i].iov_len;
	n->iov[k].iov_base = n->scratch;
	n->iov[k].iov_len = sizeof(n->scratch);
	got = n->b->ops->recv(n->b, n->iov, k + 1);
	if (got == -EAGAIN || got == -EINTR)
		return 0;
	if (got < 0) {
		n->rx_errors++;
		return 0;
	}
	mark(r, n->iov, k, (uint64_t)got); /* written, even if dropped */
	if ((uint64_t)got > cap) {
		n->rx_too_big++;
		return 2;
	}
	if ((uint64_t)got < NET_ETH_MIN) {
		n->rx_runts++;
		return 2;
	}
	memcpy(hdr + 10, &nbuf, 2);
	virtq_req_write(r, 0, hdr, NET_HDR_LEN);
	mark(r, r->iov + r->nr, (int)r->nw, NET_HDR_LEN);
	virtq_push(q, r->head, (uint32_t)(NET_HDR_LEN + got));
	n->rx_packets++;
	n->rx_bytes += (uint64_t)got;
	return 1;
}

int vnet_rx(struct vnet *n, struct virtq *q, unsigned budget, unsigned *pushed)
{
	unsigned tries = 0;

	*pushed = 0;
	while (tries++ < budget) {
		int rc = virtq_pop(q, &n->req);

		if (rc < 0)
			return rc;
		if (rc == 0) {
			n->rx_no_buf++;
			return VNET_BLOCKED;
		}
		if (n->req.nr || n->req.wlen < NET_HDR_LEN)
			return -EINVAL; /* not a receive buffer */
		do
			rc = rx_into(n, q);
		while (rc == 2 && tries++ < budget);
		if (rc != 1) {
			virtq_unpop(q);
			return rc == 0 ? VNET_IDLE : VNET_MORE;
		}
		(*pushed)++;
	}
	return VNET_MORE;
}

/* ---- the device ------------------------------------------------------------ */

static void watch_update(struct vnet *n)
{
	short in = 0, out = 0;

	if (n->active) {
		in = n->rx_wait ? 0 : POLLIN;
		out = n->tx_wait ? POLLOUT : 0;
	}
	if (n->watch_out < 0) {
		virtio_dev_watch_events(n->vd, (unsigned)n->watch,
					(short)(in | out));
		return;
	}
	virtio_dev_watch_events(n->vd, (unsigned)n->watch, in);
	virtio_dev_watch_events(n->vd, (unsigned)n->watch_out,
				(short)(in | out));
}

static void broken(struct vnet *n, const char *why)
{
	n->active = 0;
	watch_update(n);
	virtio_dev_needs_reset(n->vd, why);
}

static void do_tx(struct vnet *n)
{
	struct virtq *q = virtio_queue(n->vd, VNET_TXQ);
	unsigned pushed;
	int rc;

	if (!q || !n->active)
		return;
	rc = vnet_tx(n, q, VNET_BUDGET, &pushed);
	if (pushed)
		virtio_queue_signal(n->vd, VNET_TXQ);
	if (rc == -EINVAL) {
		broken(n, "bad transmit chain");
	} else if (rc == VNET_BLOCKED) {
		n->tx_wait = 1;
		watch_update(n);
	} else if (rc == VNET_MORE) {
		virtio_queue_kick(n->vd, VNET_TXQ); /* after the others */
	}
}

static void do_rx(struct vnet *n)
{
	struct virtq *q = virtio_queue(n->vd, VNET_RXQ);
	unsigned pushed;
	int rc;

	if (!q || !n->active)
		return;
	rc = vnet_rx(n, q, VNET_BUDGET, &pushed);
	if (pushed)
		virtio_queue_signal(n->vd, VNET_RXQ);
	if (rc == -EINVAL) {
		broken(n, "bad receive chain");
	} else if (rc == VNET_BLOCKED) {
		n->rx_wait = 1;
		watch_update(n);
	}
}

static uint64_t net_features(struct virtio_dev *vd)
{
	return (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS);
}

static void net_config_read(struct virtio_dev *vd, uint32_t off, void *data,
			    uint32_t len)
{
	struct vnet *n = vd->priv;

	memcpy(data, n->config + off, len);
}

static int net_activate(struct virtio_dev *vd)
{
	struct vnet *n = vd->priv;

	n->active = !n->dead;
	n->rx_wait = n->tx_wait = 0;
	watch_update(n);
	return 0;
}

static void net_reset(struct virtio_dev *vd)
{
	struct vnet *n = vd->priv;

	n->active = 0;
	n->rx_wait = n->tx_wait = 0;
	watch_update(n);
}

static void net_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct vnet *n = vd->priv;

	if (q == VNET_RXQ && n->rx_wait) {
		n->rx_wait = 0; /* new buffers: poll the backend again */
		watch_update(n);
	} else if (q == VNET_TXQ && !n->tx_wait) {
		do_tx(n);
	}
}

/* The backend is gone (a TAP interface deleted, a socket shut down): the
 * link goes down for good and its fds are no longer polled (poll reports
 * POLLERR and POLLHUP whatever the events asked: the worker would spin). */
static void backend_dead(struct vnet *n)
{
	struct virtio_dev *vd = n->vd;

	log_warn("virtio-net", "backend failed: link down", "dev=%s %s",
		 vd->name, n->b->desc);
	n->dead = 1;
	n->active = 0;
	virtio_dev_unwatch(vd, (unsigned)n->watch);
	if (n->watch_out >= 0)
		virtio_dev_unwatch(vd, (unsigned)n->watch_out);
	n->config[6] = 0; /* status: link down */
	virtio_config_changed(vd);
}

static void net_fd_ready(struct virtio_dev *vd, unsigned idx, short revents)
{
	struct vnet *n = vd->priv;

	if ((revents & (POLLERR | POLLHUP | POLLNVAL)) &&
	    n->b->ops->error(n->b) < 0) {
		backend_dead(n);
		return;
	}
	if (revents & POLLOUT) {
		n->tx_wait = 0;
		watch_update(n);
		do_tx(n);
	}
	if (revents & POLLIN)
		do_rx(n);
}

static int net_save(struct virtio_dev *vd, struct buf *out)
{
	struct vnet *n = vd->priv;
	struct vnet_state s = { .version = VNET_STATE_VERSION };

	/* Chains are taken and given back within one callback (a frame the
	 * backend cannot take stays on the ring): nothing in flight. */
	memcpy(s.mac, n->mac, NET_MAC_LEN);
	vnet_stats_get(n, &s.st);
	return buf_append(out, &s, sizeof(s));
}

static int net_load(struct virtio_dev *vd, const uint8_t *p, size_t len)
{
	struct vnet *n = vd->priv;
	struct vnet_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, p, sizeof(s));
	if (s.version != VNET_STATE_VERSION || (s.mac[0] & 1)) {
		log_warn("virtio-net", "saved state not understood",
			 "dev=%s version=%u", vd->name, s.version);
		return -EINVAL;
	}
	/* The guest knows the saved MAC: keep it. */
	if (memcmp(n->mac, s.mac, NET_MAC_LEN) != 0)
		log_info("virtio-net",
			 "the snapshot's MAC replaces the option's",
			 "dev=%s mac=%02x:%02x:%02x:%02x:%02x:%02x", vd->name,
			 s.mac[0], s.mac[1], s.mac[2], s.mac[3], s.mac[4],
			 s.mac[5]);
	memcpy(n->mac, s.mac, NET_MAC_LEN);
	build_config(n);
	n->rx_packets = s.st.rx_packets;
	n->rx_bytes = s.st.rx_bytes;
	n->rx_too_big = s.st.rx_too_big;
	n->rx_runts = s.st.rx_runts;
	n->rx_errors = s.st.rx_errors;
	n->tx_packets = s.st.tx_packets;
	n->tx_bytes = s.st.tx_bytes;
	n->tx_bad_len = s.st.tx_bad_len;
	n->tx_errors = s.st.tx_errors;
	n->tx_full = s.st.tx_full;
	n->rx_no_buf = s.st.rx_no_buf;
	/* Transport state says whether the driver is running. */
	n->active = !n->dead &&
		    (atomic_load(&vd->status) & VIRTIO_STATUS_DRIVER_OK) &&
		    !(atomic_load(&vd->status) & VIRTIO_STATUS_NEEDS_RESET);
	n->rx_wait = n->tx_wait = 0;
	watch_update(n);
	return 0;
}

static void net_destroy(struct virtio_dev *vd)
{
	struct vnet *n = vd->priv;
	struct vnet_stats st;

	vnet_stats_get(n, &st);
	log_info("virtio-net", "nic closed",
		 "dev=%s rx_packets=%llu rx_bytes=%llu rx_too_big=%llu "
		 "rx_runts=%llu rx_errors=%llu tx_packets=%llu tx_bytes=%llu "
		 "tx_bad_len=%llu tx_errors=%llu tx_full=%llu rx_no_buf=%llu",
		 vd->name, (unsigned long long)st.rx_packets,
		 (unsigned long long)st.rx_bytes,
		 (unsigned long long)st.rx_too_big,
		 (unsigned long long)st.rx_runts,
		 (unsigned long long)st.rx_errors,
		 (unsigned long long)st.tx_packets,
		 (unsigned long long)st.tx_bytes,
		 (unsigned long long)st.tx_bad_len,
		 (unsigned long long)st.tx_errors,
		 (unsigned long long)st.tx_full,
		 (unsigned long long)st.rx_no_buf);
	vnet_free(n);
}

static const struct virtio_dev_ops net_ops = {
	.kind = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.class_code = PCI_CLASS_NET_ETHERNET,
	.nqueues = 2,
	.queue_max = VNET_QUEUE_SIZE,
	.config_size = VNET_CONFIG_SIZE,
	.features = net_features,
	.config_read = net_config_read,
	.activate = net_activate,
	.reset = net_reset,
	.queue_notify = net_queue_notify,
	.fd_ready = net_fd_ready,
	.save = net_save,
	.load = net_load,
	.destroy = net_destroy,
};

/* RARP "reverse request" for our own MAC, broadcast, padded to 60 bytes. */
#define VNET_ETH_RARP 0x8035
#define VNET_RARP_LEN 60

unsigned virtio_net_announce(struct vm *vm)
{
	uint8_t f[VNET_RARP_LEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	unsigned sent = 0;

	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct virtio_dev *vd = vm->virtio[i];
		struct vnet *n = vd ? vd->priv : NULL;
		struct iovec iov = { f, sizeof(f) };

		if (!vd || vd->ops != &net_ops || n->dead)
			continue;
		memcpy(f + 6, n->mac, NET_MAC_LEN);
		f[12] = VNET_ETH_RARP >> 8;
		f[13] = VNET_ETH_RARP & 0xff;
		f[14] = 0, f[15] = 1; /* Ethernet */
		f[16] = 0x08, f[17] = 0x00; /* IPv4 */
		f[18] = NET_MAC_LEN, f[19] = 4;
		f[20] = 0, f[21] = 3; /* reverse request */
		memcpy(f + 22, n->mac, NET_MAC_LEN); /* sender: us, 0.0.0.0 */
		memcpy(f + 32, n->mac, NET_MAC_LEN); /* target: us, 0.0.0.0 */
		if (n->b->ops->send(n->b, &iov, 1) == (ssize_t)sizeof(f))
			sent++;
	}
	return sent;
}

int virtio_net_add(struct vm *vm, struct pci *bus, struct net_backend *b,
		   const uint8_t mac[NET_MAC_LEN], char *err, size_t errlen)
{
	struct vnet *n;
	int rc = vnet_create(b, mac, &n);

	if (rc < 0) {
		snprintf(err, errlen, "virtio-net: out of memory");
		return rc;
	}
	rc = virtio_pci_add(vm, bus, &net_ops, n, &n->vd, err, errlen);
	if (rc < 0) {
		vnet_free(n);
		return rc;
	}
	/* Not yet running: the worker polls no fd before DRIVER_OK. */
	n->watch = virtio_dev_watch(n->vd, b->fd, 0);
	if (n->watch >= 0 && b->out_fd != b->fd) {
		n->watch_out = virtio_dev_watch(n->vd, b->out_fd, 0);
		if (n->watch_out < 0)
			n->watch = n->watch_out;
	}
	if (n->watch < 0) {
		snprintf(err, errlen, "%s: cannot watch the backend",
			 n->vd->name);
		return n->watch; /* devices_destroy frees the device */
	}
	log_info("vmm", "nic attached",
		 "dev=%s mac=%02x:%02x:%02x:%02x:%02x:%02x backend=\"%s\"",
		 n->vd->name, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
		 b->desc);
	return 0;
}
