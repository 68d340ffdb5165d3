/* Unit tests for canopy-vmm's virtio-net (host/vmm/virtio_net.c,
 * net_backend.c): the --net parser and MACs, and the tx/rx paths against a
 * fake guest (tests/unit/vq_fake.h) and a scripted backend. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "host/vmm/virtio_net.h"
#include "tests/unit/vq_fake.h"

#define D VQF_DATA
#define W VIRTQ_DESC_F_WRITE
#define N VIRTQ_DESC_F_NEXT
#define BIG (NET_FRAME_MAX + 1)

/* ---- the --net option and MACs --------------------------------------- */

static void test_spec_parse_good(void **state)
{
	struct net_spec s;
	char err[256] = "";

	assert_int_equal(net_spec_parse("tap=tap0", &s, err, sizeof(err)), 0);
	assert_string_equal(s.tap, "tap0");
	assert_null(s.remote);
	assert_int_equal(s.has_mac, 0);
	assert_int_equal(net_spec_parse("unix=/run/sw,local=/run/vm,mac=52:54:"
					"00:AB:cd:01",
					&s, err, sizeof(err)),
			 0);
	assert_null(s.tap);
	assert_string_equal(s.remote, "/run/sw");
	assert_string_equal(s.local, "/run/vm");
	assert_int_equal(s.has_mac, 1);
	assert_memory_equal(s.mac, "\x52\x54\x00\xab\xcd\x01", 6);
	assert_int_equal(net_spec_parse("mac=52:54:00:00:00:09,unix=/s", &s,
					err, sizeof(err)),
			 0);
	assert_null(s.local);
}

static void test_spec_parse_bad(void **state)
{
	static const struct {
		const char *opt, *words;
	} bad[] = {
		{ "", "a backend is required" },
		{ "tap=", "interface name" },
		{ "tap=0123456789abcdef", "interface name" },
		{ "tap=a b", "interface name" },
		{ "tap=a,tap=b", "'tap=b' not understood" },
		{ "tap=a,unix=/s", "'unix=/s' not understood" },
		{ "unix=/s,tap=a", "'tap=a' not understood" },
		{ "unix=", "unix=PATH needs a path" },
		{ "unix=/s,local=", "local=PATH needs a path" },
		{ "local=/l", "a backend is required" },
		{ "tap=t,local=/l", "local=PATH goes with unix=PATH" },
		{ "unix=/s,mac=52:54:00:00:00", "not a unicast address" },
		{ "unix=/s,mac=52-54-00-00-00-01", "not a unicast address" },
		{ "unix=/s,mac=ff:ff:ff:ff:ff:ff", "not a unicast address" },
		{ "unix=/s,mac=00:00:00:00:00:00", "not a unicast address" },
		{ "unix=/s,mac=52:54:00:00:00:0g", "not a unicast address" },
		{ "unix=/s,readonly", "'readonly' not understood" },
		{ "unix=/s,vlan=3", "'vlan=3' not understood" },
	};
	char longopt[2048];

	for (size_t i = 0; i < CN_ARRAY_SIZE(bad); i++) {
		struct net_spec s;
		char err[256] = "";

		assert_int_equal(net_spec_parse(bad[i].opt, &s, err,
						sizeof(err)),
				 -EINVAL);
		if (!strstr(err, bad[i].words))
			fail_msg("'%s': got \"%s\"", bad[i].opt, err);
		assert_int_equal(strncmp(err, "--net", 5), 0);
	}
	memset(longopt, 'x', sizeof(longopt) - 1);
	longopt[sizeof(longopt) - 1] = 0;
	{
		struct net_spec s;
		char err[256];

		assert_int_equal(net_spec_parse(longopt, &s, err, sizeof(err)),
				 -EINVAL);
		assert_string_equal(err, "--net: option too long");
	}
}

static void test_mac_default(void **state)
{
	uint8_t a[6], b[6], c[6], a2[6];

	net_mac_default("web1", 0, a);
	net_mac_default("web1", 1, b);
	net_mac_default("web2", 0, c);
	net_mac_default("web1", 0, a2);
	assert_memory_equal(a, "\x52\x54\x00", 3);
	assert_memory_equal(a, a2, 6); /* stable */
	assert_memory_not_equal(a, b, 6);
	assert_memory_not_equal(a, c, 6);
	assert_int_equal(a[0] & 1, 0);
}

/* ---- a scripted backend ------------------------------------------------ */

#define FB_MAX 8
struct fake_backend {
	struct net_backend b;
	/* send: what came, and what to answer next (0: the length). */
	uint8_t sent[FB_MAX][2048];
	size_t sent_len[FB_MAX];
	unsigned nsent;
	int send_rc;
	/* recv: frames to hand out in order. */
	const uint8_t *in[FB_MAX];
	size_t in_len[FB_MAX];
	unsigned nin, next_in;
	int closed;
};

static ssize_t fb_send(struct net_backend *b, const struct iovec *iov, int n)
{
	struct fake_backend *f = (struct fake_backend *)b;
	size_t len = 0;

	if (n > 1024)
		return -EMSGSIZE;
	if (f->send_rc)
		return f->send_rc;
	if (f->nsent == FB_MAX)
		f->nsent = 0; /* random rounds: only the count matters */
	for (int i = 0; i < n; i++) {
		size_t k = len < sizeof(f->sent[0]) ?
				   CN_MIN(iov[i].iov_len,
					  sizeof(f->sent[0]) - len) :
				   0;

		memcpy(f->sent[f->nsent] + len, iov[i].iov_base, k);
		len += iov[i].iov_len; /* kept: the first 2048 bytes */
	}
	f->sent_len[f->nsent++] = len;
	return (ssize_t)len;
}

static ssize_t fb_recv(struct net_backend *b, const struct iovec *iov, int n)
{
	struct fake_backend *f = (struct fake_backend *)b;
	const uint8_t *p;
	size_t len, done = 0;

	if (n > 1024)
		return -EMSGSIZE; /* UIO_MAXIOV, as the kernel says */
	if (f->next_in == f->nin)
		return -EAGAIN;
	p = f->in[f->next_in];
	len = f->in_len[f->next_in++];
	for (int i = 0; i < n && done < len; i++) {
		size_t k = CN_MIN(iov[i].iov_len, len - done);

		memcpy(iov[i].iov_base, p + done, k);
		done += k;
	}
	return (ssize_t)len; /* the whole length, as MSG_TRUNC does */
}

static int fb_error(struct net_backend *b)
{
	return -EIO;
}

static void fb_close(struct net_backend *b)
{
	((struct fake_backend *)b)->closed = 1;
}

static const struct net_backend_ops fb_ops = {
	.send = fb_send,
	.recv = fb_recv,
	.error = fb_error,
	.close = fb_close,
};

struct fx {
	struct vqf f;
	struct fake_backend fb;
	struct vnet *n;
	uint8_t frame[BIG + 16];
};

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 1, 2, 3 };

	if (!x)
		return -1;
	x->fb.b.ops = &fb_ops;
	x->fb.b.fd = x->fb.b.out_fd = -1;
	vqf_mem_init(&x->f, 512u << 10, 64u << 10);
	vqf_rings(&x->f, 8, 0x1000, 0x1100, 0x1200);
	if (virtq_start(&x->f.q) != 0 || vnet_create(&x->fb.b, mac, &x->n) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(x->frame); i++)
		x->frame[i] = (uint8_t)(i * 13 + 1);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	vnet_free(x->n);
	assert_int_equal(x->fb.closed, 1);
	vqf_mem_free(&x->f);
	free(x);
	return 0;
}

static struct vnet_stats stats(struct fx *x)
{
	struct vnet_stats s;

	vnet_stats_get(x->n, &s);
	return s;
}

/* A tx chain at head: header (12 bytes) and flen frame bytes, split in
 * two descriptors at byte `split` of the whole. */
static void tx_chain(struct fx *x, uint16_t head, uint64_t gpa, uint32_t flen,
		     uint32_t split)
{
	uint32_t total = NET_HDR_LEN + flen;

	memset(vqf_ptr(&x->f, gpa, NET_HDR_LEN), 0, NET_HDR_LEN);
	memcpy(vqf_ptr(&x->f, gpa + NET_HDR_LEN, flen), x->frame, flen);
	vqf_desc(&x->f, head, gpa, split, N, (uint16_t)(head + 1));
	vqf_desc(&x->f, (uint16_t)(head + 1), gpa + split, total - split, 0, 0);
	vqf_avail(&x->f, head);
}

static void assert_used(struct fx *x, uint16_t slot, uint32_t id, uint32_t len)
{
	uint32_t i, l;

	vqf_used_elem(&x->f, slot, &i, &l);
	assert_int_equal(i, id);
	assert_int_equal(l, len);
}

/* ---- transmit ----------------------------------------------------------- */

static void test_tx_sends_the_frame_without_the_header(void **state)
{
	struct fx *x = *state;
	unsigned pushed;

	tx_chain(x, 0, D, 60, 5); /* the header itself split */
	tx_chain(x, 2, D + 0x1000, 1514, 12);
	assert_int_equal(vnet_tx(x->n, &x->f.q, 64, &pushed), VNET_IDLE);
	assert_int_equal(pushed, 2);
	assert_int_equal(x->fb.nsent, 2);
	assert_int_equal(x->fb.sent_len[0], 60);
	assert_memory_equal(x->fb.sent[0], x->frame, 60);
	assert_int_equal(x->fb.sent_len[1], 1514);
	assert_memory_equal(x->fb.sent[1], x->frame, 1514);
	assert_int_equal(vqf_used_idx(&x->f), 2);
	assert_used(x, 0, 0, 0);
	assert_used(x, 1, 2, 0);
	assert_int_equal(stats(x).tx_packets, 2);
	assert_int_equal(stats(x).tx_bytes, 1574);
}

static void test_tx_drops_bad_lengths(void **state)
{
	struct fx *x = *state;
	unsigned pushed;

	tx_chain(x, 0, D, 13, 12); /* shorter than an Ethernet header */
	tx_chain(x, 2, D + 0x100, 0, 6); /* the header alone */
	tx_chain(x, 4, D + 0x10000, BIG, 12); /* 65536 bytes */
	tx_chain(x, 6, D + 0x200, 14, 12); /* the smallest good one */
	assert_int_equal(vnet_tx(x->n, &x->f.q, 64, &pushed), VNET_IDLE);
	assert_int_equal(pushed, 4);
	assert_int_equal(x->fb.nsent, 1);
	assert_int_equal(x->fb.sent_len[0], 14);
	assert_int_equal(stats(x).tx_bad_len, 3);
	assert_int_equal(stats(x).tx_packets, 1);
	for (uint16_t i = 0; i < 4; i++)
		assert_used(x, i, 2u * i, 0);
}

static void test_tx_bad_chains_are_refused(void **state)
{
	struct fx *x = *state;
	unsigned pushed;

	/* Shorter than the header. */
	vqf_desc(&x->f, 0, D, 11, 0, 0);
	vqf_avail(&x->f, 0);
	assert_int_equal(vnet_tx(x->n, &x->f.q, 64, &pushed), -EINVAL);
	/* A buffer for the device to write in a transmit chain. */
	vqf_desc(&x->f, 1, D, 40, N, 2);
	vqf_desc(&x->f, 2, D + 64, 40, W, 0);
	vqf_avail(&x->f, 1);
	assert_int_equal(vnet_tx(x->n, &x->f.q, 64, &pushed), -EINVAL);
	/* Outside guest RAM. */
	vqf_desc(&x->f, 3, 0x7fff0000, 100, 0, 0);
	vqf_avail(&x->f, 3);
	assert_int_equal(vnet_tx(x->n, &x->f.q, 64, &pushed), -EINVAL);
	assert_int_equal(x->fb.nsent, 0);
	assert_int_equal(vqf_used_idx(&x->f), 0);
}

static void test_tx_full_backend_keeps_the_frame_on_the_ring(void **state)
{
	struct fx *x = *state;
	unsigned pushed;

	tx_chain(x, 0, D, 100, 12);
	tx_chain(x, 2, D + 0x100, 200, 12);
	x->fb.send_rc = -EAGAIN;
	assert_int_equal(vnet_tx(x->n, &x->f.q, 64, &pushed), VNET_BLOCKED);
	assert_int_equal(pushed, 0);
	assert_int_equal(stats(x).tx_full, 1);
	assert_int_equal(x->f.q.last_avail, 0); /* nothing in flight */
	assert_int_equal(vqf_used_idx(&x->f), 0);
	x->fb.send_rc = 0;
	assert_int_equal(vnet_tx(x->n, &x->f.q, 1, &pushed), VNET_MORE);
	assert_int_equal(pushed, 1);
	assert_int_equal(vnet_tx(x->n, &x->f.q, 1, &pushed), VNET_MORE);
	assert_int_equal(vnet_tx(x->n, &x->f.q, 1, &pushed), VNET_IDLE);
	assert_int_equal(pushed, 0);
	assert_int_equal(x->fb.nsent, 2);
	assert_int_equal(x->fb.sent_len[0], 100);
	assert_int_equal(x->fb.sent_len[1], 200);
	/* A backend that refuses outright: dropped, counted, returned. */
	tx_chain(x, 4, D, 100, 12);
	x->fb.send_rc = -ECONNREFUSED;
	assert_int_equal(vnet_tx(x->n, &x->f.q, 64, &pushed), VNET_IDLE);
	assert_int_equal(pushed, 1);
	assert_int_equal(stats(x).tx_errors, 1);
	assert_int_equal(stats(x).tx_packets, 2);
}

/* ---- receive ------------------------------------------------------------ */

static void rx_buf(struct fx *x, uint16_t head, uint64_t gpa, uint32_t len)
{
	memset(vqf_ptr(&x->f, gpa, len), 0xee, len);
	vqf_desc(&x->f, head, gpa, len, W, 0);
	vqf_avail(&x->f, head);
}

static void feed(struct fx *x, const uint8_t *p, size_t len)
{
	x->fb.in[x->fb.nin] = p;
	x->fb.in_len[x->fb.nin++] = len;
}

static void test_rx_delivers_with_a_zero_header(void **state)
{
	struct fx *x = *state;
	static const uint8_t hdr[NET_HDR_LEN] = { [10] = 1 };
	unsigned pushed;

	rx_buf(x, 0, D, NET_HDR_LEN + 1514);
	/* A chain split inside the header. */
	vqf_desc(&x->f, 1, D + 0x1000, 7, W | N, 2);
	vqf_desc(&x->f, 2, D + 0x2000, 1000, W, 0);
	vqf_avail(&x->f, 1);
	feed(x, x->frame, 100);
	feed(x, x->frame + 1, 995);
	/* Both buffers filled: none left to receive into. */
	assert_int_equal(vnet_rx(x->n, &x->f.q, 64, &pushed), VNET_BLOCKED);
	assert_int_equal(pushed, 2);
	assert_used(x, 0, 0, NET_HDR_LEN + 100);
	assert_memory_equal(vqf_ptr(&x->f, D, NET_HDR_LEN), hdr, NET_HDR_LEN);
	assert_memory_equal(vqf_ptr(&x->f, D + NET_HDR_LEN, 100), x->frame,
			    100);
	assert_used(x, 1, 1, NET_HDR_LEN + 995);
	assert_memory_equal(vqf_ptr(&x->f, D + 0x1000, 7), hdr, 7);
	assert_memory_equal(vqf_ptr(&x->f, D + 0x2000, 5), hdr + 7, 5);
	assert_memory_equal(vqf_ptr(&x->f, D + 0x2005, 995), x->frame + 1, 995);
	assert_int_equal(stats(x).rx_packets, 2);
	assert_int_equal(stats(x).rx_bytes, 1095);
}

static void test_rx_waits_for_buffers_and_frames(void **state)
{
	struct fx *x = *state;
	unsigned pushed;

	/* A frame but no buffer: the frame stays in the backend. */
	feed(x, x->frame, 60);
	assert_int_equal(vnet_rx(x->n, &x->f.q, 64, &pushed), VNET_BLOCKED);
	assert_int_equal(x->fb.next_in, 0);
	assert_int_equal(stats(x).rx_no_buf, 1);
	/* A buffer: delivered; then none left and nothing to read. */
	rx_buf(x, 3, D, 2048);
	rx_buf(x, 4, D + 0x1000, 2048);
	assert_int_equal(vnet_rx(x->n, &x->f.q, 64, &pushed), VNET_IDLE);
	assert_int_equal(pushed, 1);
	/* The second buffer was given back to the ring, not kept. */
	assert_int_equal(x->f.q.last_avail, 1);
	feed(x, x->frame, 70);
	assert_int_equal(vnet_rx(x->n, &x->f.q, 64, &pushed), VNET_BLOCKED);
	assert_int_equal(pushed, 1);
	assert_used(x, 1, 4, NET_HDR_LEN + 70);
}

static void test_rx_drops_too_big_and_runts_and_reuses_the_buffer(void **state)
{
	struct fx *x = *state;
	unsigned pushed;

	rx_buf(x, 0, D, NET_HDR_LEN + 1000);
	feed(x, x->frame, 1001); /* one byte too many */
	feed(x, x->frame, 60000);
	feed(x, x->frame, 13); /* a runt */
	feed(x, x->frame, 1000); /* exactly fits */
	assert_int_equal(vnet_rx(x->n, &x->f.q, 64, &pushed), VNET_BLOCKED);
	assert_int_equal(pushed, 1);
	assert_int_equal(vqf_used_idx(&x->f), 1);
	assert_used(x, 0, 0, NET_HDR_LEN + 1000);
	assert_memory_equal(vqf_ptr(&x->f, D + NET_HDR_LEN, 1000), x->frame,
			    1000);
	assert_int_equal(stats(x).rx_too_big, 2);
	assert_int_equal(stats(x).rx_runts, 1);
	assert_int_equal(stats(x).rx_packets, 1);
}

static void test_rx_budget_gives_the_buffer_back(void **state)
{
	struct fx *x = *state;
	unsigned pushed;

	rx_buf(x, 0, D, 2048);
	for (int i = 0; i < 4; i++)
		feed(x, x->frame, 5); /* runts: each costs a try */
	assert_int_equal(vnet_rx(x->n, &x->f.q, 2, &pushed), VNET_MORE);
	assert_int_equal(pushed, 0);
	assert_int_equal(x->f.q.last_avail, 0);
	assert_int_equal(vqf_used_idx(&x->f), 0);
}

static void test_rx_chain_of_1024_segments(void **state)
{
	struct fx *x = *state;
	uint64_t table = D + 0x8000, data = D + 0x10000;
	unsigned pushed;

	/* Through an indirect table: 13 bytes (header and one data byte),
	 * then 1023 one-byte buffers. One system call takes 1024 iovecs,
	 * the device's scratch one included: 1023 data bytes fit. */
	x->f.q.indirect = 1;
	vqf_desc_at(&x->f, table, 0, data, 13, W | N, 1);
	for (uint16_t i = 1; i < 1024; i++)
		vqf_desc_at(&x->f, table, i, data + 12 + i, 1,
			    (uint16_t)(W | (i < 1023 ? N : 0)),
			    (uint16_t)(i + 1));
	vqf_desc(&x->f, 0, table, 1024 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	vqf_avail(&x->f, 0);
	feed(x, x->frame, 1024); /* one more than fits now */
	feed(x, x->frame, 1023);
	assert_int_equal(vnet_rx(x->n, &x->f.q, 64, &pushed), VNET_BLOCKED);
	assert_int_equal(pushed, 1);
	assert_used(x, 0, 0, NET_HDR_LEN + 1023);
	assert_memory_equal(vqf_ptr(&x->f, data + 12, 1023), x->frame, 1023);
	assert_int_equal(stats(x).rx_too_big, 1);
	assert_int_equal(stats(x).rx_errors, 0);
}

static void test_rx_bad_chains_are_refused(void **state)
{
	struct fx *x = *state;
	unsigned pushed;

	/* A device-readable buffer in a receive chain. */
	vqf_desc(&x->f, 0, D, 100, N, 1);
	vqf_desc(&x->f, 1, D + 100, 2000, W, 0);
	vqf_avail(&x->f, 0);
	feed(x, x->frame, 60);
	assert_int_equal(vnet_rx(x->n, &x->f.q, 64, &pushed), -EINVAL);
	/* Too small for the header. */
	vqf_desc(&x->f, 2, D, 11, W, 0);
	vqf_avail(&x->f, 2);
	assert_int_equal(vnet_rx(x->n, &x->f.q, 64, &pushed), -EINVAL);
	/* A loop. */
	vqf_desc(&x->f, 3, D, 100, W | N, 4);
	vqf_desc(&x->f, 4, D, 100, W | N, 3);
	vqf_avail(&x->f, 3);
	assert_int_equal(vnet_rx(x->n, &x->f.q, 64, &pushed), -EINVAL);
	assert_int_equal(x->fb.next_in, 0);
	assert_int_equal(vqf_used_idx(&x->f), 0);
}

/* ---- randomized hostile rings ----------------------------------------- */

#define RAND_ROUNDS 100000u

static uint64_t rnd_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull); /* splitmix64 */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Random descriptors and ring for a queue of 8 (mostly inside RAM, near
 * its edges, sometimes wild), then tx or rx on it with random frames. */
static void rand_round(struct fx *x, uint64_t *s, unsigned *pushed_total)
{
	static const uint64_t bases[] = { D, 0x7ff00, 0x10, GMEM_HIGH_START,
					  GMEM_HIGH_START + 0xff00 };
	uint64_t r = rnd_next(s);
	int tx = r & 1, rc;
	unsigned pushed;
	uint16_t used0;

	vqf_rings(&x->f, 8, 0x1000, 0x1100, 0x1200);
	memset(vqf_ptr(&x->f, 0x1000, 0x300), 0, 0x300); /* fresh rings */
	x->f.q.indirect = (r >> 1) & 1;
	x->f.q.event_idx = (r >> 2) & 1;
	assert_int_equal(virtq_start(&x->f.q), 0);
	for (uint16_t i = 0; i < 8; i++) {
		uint64_t v = rnd_next(s);
		uint64_t addr = (v & 7) == 7 ?
					rnd_next(s) :
					bases[v % 5] + ((v >> 8) & 0xfff);

		vqf_desc(&x->f, i, addr, (uint32_t)((v >> 20) % 3000),
			 (uint16_t)((v >> 32) & 7), (uint16_t)((v >> 40) % 10));
	}
	for (unsigned i = 0, n = (unsigned)((r >> 3) % 9); i < n; i++)
		vqf_avail(&x->f, (uint16_t)(rnd_next(s) % 9));
	x->fb.nin = x->fb.next_in = x->fb.nsent = 0;
	for (unsigned i = 0; i < FB_MAX; i++)
		feed(x, x->frame, (size_t)(rnd_next(s) % 3000));
	x->fb.send_rc = (r >> 8) % 4 == 0 ? -EAGAIN : 0;
	used0 = x->f.q.used_idx;
	rc = tx ? vnet_tx(x->n, &x->f.q, 8, &pushed) :
		  vnet_rx(x->n, &x->f.q, 8, &pushed);
	assert_true(rc == -EINVAL || rc == VNET_IDLE || rc == VNET_MORE ||
		    rc == VNET_BLOCKED);
	/* The device's own count (the guest may have pointed buffers at
	 * its rings, so what is in guest memory proves nothing). */
	assert_int_equal((uint16_t)(x->f.q.used_idx - used0), pushed);
	assert_true(pushed <= 8);
	*pushed_total += pushed;
}

static void test_random_rings(void **state)
{
	struct fx *x = *state;
	const char *env = getenv("CANOPY_VQ_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	uint64_t s = seed;
	unsigned pushed = 0;

	print_message("virtio-net random rings: seed %llu "
		      "(CANOPY_VQ_SEED=%llu replays it)\n",
		      (unsigned long long)seed, (unsigned long long)seed);
	for (unsigned i = 0; i < RAND_ROUNDS; i++)
		rand_round(x, &s, &pushed);
	/* The generator reaches the paths that complete requests too: about
	 * one round in 20 pushes (4,993 for seed 51, 5,061 for 52), so the
	 * bound sits at half of that, not at the mean (it failed for 51). */
	assert_true(pushed > RAND_ROUNDS / 40);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_parse_good),
		cmocka_unit_test(test_spec_parse_bad),
		cmocka_unit_test(test_mac_default),
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_tx_sends_the_frame_without_the_header),
		T(test_tx_drops_bad_lengths),
		T(test_tx_bad_chains_are_refused),
		T(test_tx_full_backend_keeps_the_frame_on_the_ring),
		T(test_rx_delivers_with_a_zero_header),
		T(test_rx_waits_for_buffers_and_frames),
		T(test_rx_drops_too_big_and_runts_and_reuses_the_buffer),
		T(test_rx_budget_gives_the_buffer_back),
		T(test_rx_chain_of_1024_segments),
		T(test_rx_bad_chains_are_refused),
		T(test_random_rings),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
