/*
 * virtio-net for canopy-vmm: one rx/tx queue pair, the MAC address and the
 * link status in the device configuration, the 12-byte virtio_net_hdr_v1
 * on every buffer and no offloads (the header is zero on receive and
 * ignored, but required, on transmit). Frames go to and come from a
 * `struct net_backend`: a TAP interface or a unix datagram socket (one
 * Ethernet frame per datagram, the port format of Canopy's host switch
 * and of QEMU's `-netdev dgram`).
 *
 * Threads: the queues and the backend run on the device's worker thread
 * (virtio_pci.h). The vnet_* core below is pure code over a struct virtq
 * and a backend, so it can be driven by unit tests without KVM.
 */
#ifndef CANOPY_VMM_VIRTIO_NET_H
#define CANOPY_VMM_VIRTIO_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "host/vmm/virtq.h"
#include "lib/compiler.h"

struct vm;
struct pci;

/* Ethernet frame limits: a header, and the most a guest may send. */
#define NET_ETH_MIN 14u
#define NET_FRAME_MAX 65535u
/* virtio_net_hdr_v1 (VERSION_1 layout, with num_buffers). */
#define NET_HDR_LEN 12u
#define NET_MAC_LEN 6
/* Longest TAP interface name (IFNAMSIZ - 1) and unix socket path. */
#define NET_IFNAME_MAX 15u
#define NET_PATH_MAX 107u

/* One --net option, parsed. Strings point into text. */
struct net_spec {
	char text[1024];
	const char *tap; /* tap=NAME, or NULL */
	const char *remote; /* unix=PATH: where frames are sent, or NULL */
	const char *local; /* local=PATH: bound here; NULL: autobind */
	int has_mac;
	uint8_t mac[NET_MAC_LEN];
};

/* Parse "tap=NAME[,mac=M]" or "unix=PATH[,local=PATH][,mac=M]". 0, or
 * -EINVAL with a one-line message in err. Pure. */
CN_MUST_CHECK int net_spec_parse(const char *opt, struct net_spec *out,
				 char *err, size_t errlen);
/* Parse "52:54:00:12:34:56": unicast, not all zero. 0 or -EINVAL. */
CN_MUST_CHECK int net_mac_parse(const char *s, uint8_t mac[NET_MAC_LEN]);
/* The default MAC of NIC `index` of VM `name`: 52:54:00 and three bytes
 * of a hash of both. Pure. */
void net_mac_default(const char *name, unsigned index,
		     uint8_t mac[NET_MAC_LEN]);

/* Where frames go. Calls come from the device's worker thread only. */
struct net_backend;
struct net_backend_ops {
	/* Send one frame gathered from iov: its length, -EAGAIN when the
	 * backend is full (retry on POLLOUT), other -errno: frame lost. */
	ssize_t (*send)(struct net_backend *b, const struct iovec *iov, int n);
	/* Receive one frame into iov: its whole length, which is more than
	 * the iov holds when it was too big (then the copy is partial);
	 * -EAGAIN when there is none; other -errno. */
	ssize_t (*recv)(struct net_backend *b, const struct iovec *iov, int n);
	/* poll reported POLLERR or POLLHUP: 0 when that was a passing
	 * error (now cleared), -errno when the backend is gone. */
	int (*error)(struct net_backend *b);
	void (*close)(struct net_backend *b);
};

struct net_backend {
	const struct net_backend_ops *ops;
	/* Polled by the device: fd for POLLIN (frames), out_fd for POLLIN
	 * and POLLOUT (room to send); the same fd for TAP. */
	int fd, out_fd;
	char desc[160]; /* "tap tap0", "unix /run/sw.sock local ..." */
};

/* Open the backend spec asks for: TAP (the interface is created when it
 * does not exist; needs CAP_NET_ADMIN) or unix datagram sockets: one bound
 * at spec->local (a stale socket file there is replaced, a live one
 * refused) that receives, one connected to spec->remote that sends (the
 * peer may appear later: until then frames are dropped and counted).
 * 0 or -errno with a message in err. */
CN_MUST_CHECK int net_backend_open(const struct net_spec *spec,
				   struct net_backend **out, char *err,
				   size_t errlen);

/* Counters of one NIC. */
struct vnet_stats {
	uint64_t rx_packets, rx_bytes; /* delivered to the guest */
	uint64_t rx_too_big; /* larger than the guest's buffer: dropped */
	uint64_t rx_runts; /* shorter than an Ethernet header: dropped */
	uint64_t rx_errors; /* the backend failed to receive */
	uint64_t tx_packets, tx_bytes; /* handed to the backend */
	uint64_t tx_bad_len; /* < 14 or > 65535 bytes: dropped */
	uint64_t tx_errors; /* the backend refused it: dropped */
	uint64_t tx_full; /* times the backend was full (frame kept) */
	uint64_t rx_no_buf; /* times the guest had no receive buffer */
};

/* The device model: created over a backend (ownership passes, also on
 * failure) with a MAC. */
struct vnet;
CN_MUST_CHECK int vnet_create(struct net_backend *b,
			      const uint8_t mac[NET_MAC_LEN],
			      struct vnet **out);
void vnet_free(struct vnet *n);
void vnet_stats_get(const struct vnet *n, struct vnet_stats *out);

/* Results of vnet_tx / vnet_rx besides -EINVAL (a bad chain: the device
 * must need a reset). *pushed counts used entries given back (signal the
 * driver when nonzero). */
#define VNET_IDLE 0 /* nothing more to do now */
#define VNET_MORE 1 /* budget used up: call again */
/* tx: the backend is full (wait for POLLOUT); rx: no guest buffer (wait
 * for an rx kick). */
#define VNET_BLOCKED 2

/* Send up to budget frames from the tx queue. A frame the backend cannot
 * take yet stays on the ring (nothing in flight when this returns). */
CN_MUST_CHECK int vnet_tx(struct vnet *n, struct virtq *q, unsigned budget,
			  unsigned *pushed);
/* Receive up to budget frames from the backend into the rx queue. */
CN_MUST_CHECK int vnet_rx(struct vnet *n, struct virtq *q, unsigned budget,
			  unsigned *pushed);

/* Add a virtio-net device over backend b (ownership passes, also on
 * failure) with this MAC to the VM's PCI bus. */
CN_MUST_CHECK int virtio_net_add(struct vm *vm, struct pci *bus,
				 struct net_backend *b,
				 const uint8_t mac[NET_MAC_LEN], char *err,
				 size_t errlen);

/* After a live migration: send one RARP frame (as QEMU's announce) from
 * every NIC's backend so switches learn the MAC's new port. Returns the
 * number of frames sent. Any thread; the backends' sends are single
 * system calls. */
unsigned virtio_net_announce(struct vm *vm);

#endif
