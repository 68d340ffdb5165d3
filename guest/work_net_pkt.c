/* Test guest: Ethernet, ARP, IPv4, ICMP echo and UDP frames of the `net`
 * workload (built and checked here, sent through work_net.c). */
#include "guest/work_net.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ARP_LEN 28
#define ARP_REQUEST 1
#define ARP_REPLY 2
#define IP_HLEN 20
#define IP_PROTO_ICMP 1
#define IP_PROTO_UDP 17
#define IP_TTL 64
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO 8
#define UDP_HLEN 8
#define UDP_SRC_PORT 40000
#define NET_COOKIE 0x504e4143u /* "CANP" */

static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

/* The Internet checksum (RFC 1071) of len bytes. */
static uint16_t csum(const uint8_t *p, uint32_t len)
{
	uint64_t s = 0;

	for (uint32_t i = 0; i + 1 < len; i += 2)
		s += get16(p + i);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void eth(uint8_t *f, const uint8_t *dst, const uint8_t *src,
		uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	put16(f + 12, type);
}

/* An IPv4 header (20 bytes, no options) for payload bytes to dst. */
static void ip_hdr(uint8_t *p, uint32_t src, uint32_t dst, uint8_t proto,
		   uint32_t payload)
{
	memset(p, 0, IP_HLEN);
	p[0] = 0x45;
	put16(p + 2, (uint16_t)(IP_HLEN + payload));
	put16(p + 6, 0x4000); /* don't fragment */
	p[8] = IP_TTL;
	p[9] = proto;
	put32(p + 12, src);
	put32(p + 16, dst);
	put16(p + 10, csum(p, IP_HLEN));
}

static void arp_send(struct net *n, uint16_t op, const uint8_t *tha,
		     uint32_t tip)
{
	uint8_t *f = net_tx_get(n), *a;

	if (!f)
		return; /* every buffer in flight: the peer asks again */
	eth(f, op == ARP_REQUEST ? bcast : tha, n->mac, ETH_P_ARP);
	a = f + ETH_HLEN;
	put16(a, 1); /* Ethernet */
	put16(a + 2, ETH_P_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, n->mac, 6);
	put32(a + 14, n->ip);
	if (op == ARP_REPLY)
		memcpy(a + 18, tha, 6);
	put32(a + 24, tip);
	(void)net_tx_send(n, ETH_HLEN + ARP_LEN);
}

void net_arp_request(struct net *n)
{
	arp_send(n, ARP_REQUEST, bcast, n->peer);
}

static void arp_in(struct net *n, const uint8_t *a, uint32_t len)
{
	uint32_t sip, tip;

	if (len < ARP_LEN || get16(a) != 1 || get16(a + 2) != ETH_P_IP ||
	    a[4] != 6 || a[5] != 4)
		return;
	sip = get32(a + 14);
	tip = get32(a + 24);
	if (sip == n->peer && n->mode == NET_UDPSEND && !(a[8] & 1)) {
		memcpy(n->peer_mac, a + 8, 6);
		n->peer_known = 1;
	}
	if (get16(a + 6) == ARP_REQUEST && tip == n->ip) {
		arp_send(n, ARP_REPLY, a + 8, sip);
		n->arp_replies++;
	}
}

/* Echo request in IP packet p (header ihl bytes, total tot bytes). */
static void icmp_in(struct net *n, const uint8_t *f, const uint8_t *p,
		    uint32_t ihl, uint32_t tot)
{
	uint32_t ilen = tot - ihl;
	uint8_t *o, *ic;

	if (ilen < 8 || p[ihl] != ICMP_ECHO || csum(p + ihl, ilen) != 0 ||
	    ilen > NET_BUF - NET_HDR - ETH_HLEN - IP_HLEN)
		return;
	o = net_tx_get(n);
	if (!o)
		return;
	eth(o, f + 6, n->mac, ETH_P_IP);
	ip_hdr(o + ETH_HLEN, n->ip, get32(p + 12), IP_PROTO_ICMP, ilen);
	ic = o + ETH_HLEN + IP_HLEN;
	memcpy(ic, p + ihl, ilen);
	ic[0] = ICMP_ECHO_REPLY;
	put16(ic + 2, 0);
	put16(ic + 2, csum(ic, ilen));
	if (!net_tx_send(n, ETH_HLEN + IP_HLEN + ilen))
		n->icmp_replies++;
}

static uint8_t pattern(uint32_t seq, uint32_t i)
{
	return (uint8_t)(seq * 7u + i);
}

/* A UDP test datagram: seq (4 bytes), the cookie, pattern bytes. */
static void udp_in(struct net *n, const uint8_t *u, uint32_t len)
{
	const uint8_t *d = u + UDP_HLEN;
	uint32_t dl = len - UDP_HLEN, seq;
	uint64_t t = guest_rdtsc();

	if (get16(u + 4) != len || dl < NET_PAYLOAD_MIN ||
	    get32(d + 4) != NET_COOKIE) {
		n->bad++;
		return;
	}
	seq = get32(d);
	for (uint32_t i = 8; i < dl; i++)
		if (d[i] != pattern(seq, i)) {
			n->bad++;
			return;
		}
	if (seq >= n->count || (n->seen[seq / 8] & (1u << (seq % 8)))) {
		n->bad++; /* out of range or a duplicate */
		return;
	}
	n->seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
	if (!n->got)
		n->t_first = t;
	n->t_last = t;
	n->got++;
	n->got_bytes += dl;
}

static void ip_in(struct net *n, const uint8_t *f, const uint8_t *p,
		  uint32_t len)
{
	uint32_t ihl, tot;

	if (len < IP_HLEN || (p[0] >> 4) != 4)
		return;
	ihl = (uint32_t)(p[0] & 15) * 4;
	tot = get16(p + 2);
	if (ihl < IP_HLEN || tot < ihl || tot > len || get32(p + 16) != n->ip ||
	    (get16(p + 6) & 0x3fff))
		return; /* not for us, or a fragment */
	if (csum(p, ihl) != 0) {
		n->bad += p[9] == IP_PROTO_UDP && n->mode == NET_UDPRECV;
		return;
	}
	if (p[9] == IP_PROTO_ICMP)
		icmp_in(n, f, p, ihl, tot);
	else if (p[9] == IP_PROTO_UDP && n->mode == NET_UDPRECV &&
		 tot - ihl >= UDP_HLEN && get16(p + ihl + 2) == n->port)
		udp_in(n, p + ihl, tot - ihl);
}

void net_frame(struct net *n, const uint8_t *f, uint32_t len)
{
	if (len < ETH_HLEN ||
	    (memcmp(f, n->mac, 6) != 0 && memcmp(f, bcast, 6) != 0))
		return;
	if (get16(f + 12) == ETH_P_ARP)
		arp_in(n, f + ETH_HLEN, len - ETH_HLEN);
	else if (get16(f + 12) == ETH_P_IP)
		ip_in(n, f, f + ETH_HLEN, len - ETH_HLEN);
}

int net_udp_send(struct net *n, uint32_t seq)
{
	uint32_t dl = (uint32_t)n->len;
	uint8_t *f = net_tx_get(n), *u, *d;

	if (!f)
		return -1;
	eth(f, n->peer_mac, n->mac, ETH_P_IP);
	ip_hdr(f + ETH_HLEN, n->ip, n->peer, IP_PROTO_UDP, UDP_HLEN + dl);
	u = f + ETH_HLEN + IP_HLEN;
	put16(u, UDP_SRC_PORT);
	put16(u + 2, (uint16_t)n->port);
	put16(u + 4, (uint16_t)(UDP_HLEN + dl));
	put16(u + 6, 0); /* no checksum (IPv4 allows it) */
	d = u + UDP_HLEN;
	put32(d, seq);
	put32(d + 4, NET_COOKIE);
	for (uint32_t i = 8; i < dl; i++)
		d[i] = pattern(seq, i);
	return net_tx_send(n, ETH_HLEN + IP_HLEN + UDP_HLEN + dl) ? -1 : 0;
}
