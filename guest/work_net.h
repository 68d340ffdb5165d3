/* Test guest: the `net` workload's state, shared by its driver part
 * (work_net.c) and its frame part (work_net_pkt.c). CPL3 only. */
#ifndef GUEST_WORK_NET_H
#define GUEST_WORK_NET_H

#include "guest/user_virtio.h"

#define NET_HDR 12 /* virtio_net_hdr_v1 before every frame */
#define NET_BUF 2048 /* one rx or tx buffer: header and a frame */
#define NET_QSIZE 256 /* entries asked for per queue */
#define NET_PAYLOAD_MIN 8 /* UDP payload: sequence number and cookie */
#define NET_PAYLOAD_MAX 1472 /* UDP payload in a 1500-byte IP packet */

enum net_mode { NET_RESPONDER, NET_UDPSEND, NET_UDPRECV, NET_BADTX };

struct net {
	struct user_ctx *u;
	struct user_pci pci;
	struct user_mem mem;
	struct user_virtio v;
	enum net_mode mode;
	uint32_t ip, peer; /* host byte order */
	uint64_t port, count, secs, len, dev;
	uint8_t mac[6], peer_mac[6];
	int peer_known;
	/* Buffers: one descriptor each; slot of a chain by its head. */
	unsigned nrx, ntx, ntx_free, tx_pending;
	uint16_t tx_cur;
	uint8_t *rxbuf[NET_QSIZE], *txbuf[NET_QSIZE];
	uint16_t rx_slot[NET_QSIZE], tx_slot[NET_QSIZE], tx_free[NET_QSIZE];
	/* What came in. */
	uint64_t arp_replies, icmp_replies, runts;
	uint64_t got, got_bytes, bad, t_first, t_last;
	uint8_t *seen; /* udprecv: bitmap of sequence numbers */
	uint64_t t_status; /* TSC when the device status was last read */
};

/* work_net.c: a zeroed tx buffer's frame part (after the header), NULL
 * when all are in flight; then send len bytes of it (queued; kicked every
 * few frames or by net_tx_flush). */
uint8_t *net_tx_get(struct net *n);
int net_tx_send(struct net *n, unsigned len);
void net_tx_flush(struct net *n);

/* work_net_pkt.c */
/* One received Ethernet frame: answers ARP and ICMP echo for our
 * address, learns the peer's MAC, counts and checks UDP test datagrams. */
void net_frame(struct net *n, const uint8_t *f, uint32_t len);
/* Who has n->peer? (broadcast). */
void net_arp_request(struct net *n);
/* Datagram seq of the stream to the peer: 0, or -1 when no buffer. */
int net_udp_send(struct net *n, uint32_t seq);

#endif
