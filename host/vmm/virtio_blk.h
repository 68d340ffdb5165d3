/*
 * virtio-blk for canopy-vmm: a disk backed by a file or a block device
 * (raw), read/write/flush/get-id, discard and write-zeroes where the
 * backend can, read-only and O_DIRECT options. Requests run on the
 * device's worker thread (virtio_pci.h), so vCPUs never wait for the disk.
 *
 * The storage behind a disk is a `struct blk_backend`: the plain file
 * backend lives here; other backends (the clustered datastore) provide the
 * same ops.
 */
#ifndef CANOPY_VMM_VIRTIO_BLK_H
#define CANOPY_VMM_VIRTIO_BLK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "lib/compiler.h"

struct vm;
struct pci;
struct virtio_dev;

/* The longest serial (virtio-blk GET_ID: 20 bytes). */
#define BLK_SERIAL_MAX 20

/* One --disk option, parsed. Strings point into the option text's copy
 * held by the spec (text). */
struct blk_spec {
	char text[1024];
	const char *path; /* path=: a file or block device */
	const char *ds_dev, *ds_file; /* ds=DEV:FILE: a datastore file */
	unsigned ds_host; /* host=: our heartbeat slot on the datastore */
	const char *ds_name; /* name shown in that slot (the VM's) */
	const char *serial; /* NULL: none */
	int readonly, direct;
	/* ds=: an incoming migration's disk: join and size now, take the
	 * file's lock only at the hand-over (host/vmm/blk_ds.h). */
	int defer_lock;
};

/* Parse "path=FILE|ds=DEV:FILE,host=ID[,readonly][,direct][,serial=ID]".
 * 0, or -EINVAL with a one-line message in err. Pure. */
CN_MUST_CHECK int blk_spec_parse(const char *opt, struct blk_spec *out,
				 char *err, size_t errlen);

/* Storage behind a disk. Offsets and lengths are bytes; calls come from
 * the device's worker thread only. Each returns 0 or -errno unless noted. */
struct blk_backend;
struct blk_backend_ops {
	/* Bytes transferred (short only at the end of the backend) or
	 * -errno. */
	ssize_t (*preadv)(struct blk_backend *b, const struct iovec *iov, int n,
			  uint64_t off);
	ssize_t (*pwritev)(struct blk_backend *b, const struct iovec *iov,
			   int n, uint64_t off);
	int (*flush)(struct blk_backend *b);
	/* NULL when the backend cannot; -EOPNOTSUPP at run time too. */
	int (*discard)(struct blk_backend *b, uint64_t off, uint64_t len);
	int (*write_zeroes)(struct blk_backend *b, uint64_t off, uint64_t len);
	void (*close)(struct blk_backend *b);
};

struct blk_backend {
	const struct blk_backend_ops *ops;
	uint64_t size; /* bytes, a multiple of 512 */
	uint32_t block_size; /* logical block size (512 or 4096) */
	int readonly;
	int parallel; /* preadv/pwritev may run on several threads at once */
};

/* Open the file backend for spec. 0 or -errno with a message in err. */
CN_MUST_CHECK int blk_file_open(const struct blk_spec *spec,
				struct blk_backend **out, char *err,
				size_t errlen);

/* Open the datastore backend for spec (ds_dev set): join the volume as
 * host ds_host, lock the file. 0 or -errno with a message in err (e.g.
 * "locked by host 2"). */
CN_MUST_CHECK int blk_ds_open(const struct blk_spec *spec,
			      struct blk_backend **out, char *err,
			      size_t errlen);

/* Add a virtio-blk device over backend b (ownership passes to the device,
 * also on failure) to the VM's PCI bus. */
CN_MUST_CHECK int virtio_blk_add(struct vm *vm, struct pci *bus,
				 struct blk_backend *b, const char *serial,
				 char *err, size_t errlen);

#endif
