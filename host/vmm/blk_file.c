/* Disk backends: the --disk option parser and the raw file / block device
 * backend (preadv/pwritev, O_DIRECT with a bounce buffer for unaligned
 * guest buffers, fdatasync, discard and write-zeroes by fallocate). */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/vmm/virtio_blk.h"
#include "lib/sys.h"

#define BLK_SECTOR 512u
/* Bounce buffer for O_DIRECT requests whose guest buffers are unaligned. */
#define BLK_BOUNCE_MAX (64u << 20)

struct blk_file {
	struct blk_backend b;
	int fd;
	int direct;
	int can_punch; /* fallocate ranges work (file or block device) */
};

static int serial_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > BLK_SERIAL_MAX)
		return 0;
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e || *s == ',')
			return 0;
	return 1;
}

/* The combination of keys: one backend, and host= with ds= only. */
static int spec_check(struct blk_spec *s, char *err, size_t errlen)
{
	if (!s->path && !s->ds_dev) {
		snprintf(err, errlen,
			 "--disk: path=FILE (or ds=DEV:FILE) is "
			 "required");
		return -EINVAL;
	}
	if (s->path && s->ds_dev) {
		snprintf(err, errlen, "--disk: give path= or ds=, not both");
		return -EINVAL;
	}
	if (s->ds_dev && !s->ds_host) {
		snprintf(err, errlen,
			 "--disk: ds= needs host=ID (this VMM's heartbeat "
			 "slot on the datastore)");
		return -EINVAL;
	}
	if (!s->ds_dev && s->ds_host) {
		snprintf(err, errlen,
			 "--disk: host= applies to ds= disks only");
		return -EINVAL;
	}
	if (s->ds_dev && s->direct) {
		snprintf(err, errlen,
			 "--disk: ds= disks are always O_DIRECT; "
			 "drop ',direct'");
		return -EINVAL;
	}
	if (!s->ds_name)
		s->ds_name = "canopy-vmm";
	return 0;
}

int blk_spec_parse(const char *opt, struct blk_spec *out, char *err,
		   size_t errlen)
{
	char *save = NULL, *tok;

	memset(out, 0, sizeof(*out));
	if (strlen(opt) >= sizeof(out->text)) {
		snprintf(err, errlen, "--disk: option too long");
		return -EINVAL;
	}
	strcpy(out->text, opt);
	for (tok = strtok_r(out->text, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (strncmp(tok, "path=", 5) == 0 && !out->path) {
			out->path = tok[5] ? tok + 5 : NULL;
			if (!out->path)
				break;
		} else if (strncmp(tok, "ds=", 3) == 0 && !out->ds_dev) {
			char *colon = strrchr(tok + 3, ':');

			if (!colon || colon == tok + 3 || !colon[1]) {
				snprintf(
					err, errlen,
					"--disk: ds= needs DEV:FILE (the "
					"datastore volume and the file in it)");
				return -EINVAL;
			}
			*colon = 0;
			out->ds_dev = tok + 3;
			out->ds_file = colon + 1;
		} else if (strncmp(tok, "host=", 5) == 0 && !out->ds_host) {
			char *end;
			unsigned long v = strtoul(tok + 5, &end, 10);

			if (!tok[5] || *end || v < 1 || v > 64) {
				snprintf(err, errlen,
					 "--disk: host= must be a datastore "
					 "host id, 1..64");
				return -EINVAL;
			}
			out->ds_host = (unsigned)v;
		} else if (strcmp(tok, "readonly") == 0) {
			out->readonly = 1;
		} else if (strcmp(tok, "direct") == 0) {
			out->direct = 1;
		} else if (strncmp(tok, "serial=", 7) == 0 && !out->serial) {
			out->serial = tok + 7;
			if (!serial_ok(out->serial)) {
				snprintf(err, errlen,
					 "--disk: serial must be 1 to %d "
					 "printable characters without spaces",
					 BLK_SERIAL_MAX);
				return -EINVAL;
			}
		} else {
			snprintf(err, errlen,
				 "--disk: '%s' not understood; expected "
				 "path=FILE[,readonly][,direct][,serial=ID]",
				 tok);
			return -EINVAL;
		}
	}
	return spec_check(out, err, errlen);
}

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;

	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static int aligned(const struct blk_file *f, const struct iovec *iov, int n)
{
	uintptr_t a = f->b.block_size - 1;

	for (int i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base & a) || (iov[i].iov_len & a))
			return 0;
	return 1;
}

/* pread/pwrite the whole range, retrying short transfers; bytes done. */
static ssize_t rw_full(struct blk_file *f, const struct iovec *iov, int n,
		       uint64_t off, int wr)
{
	struct iovec v[IOV_MAX];
	size_t total = iov_total(iov, n), done = 0;

	if (n > IOV_MAX)
		return -EINVAL;
	memcpy(v, iov, sizeof(*v) * (size_t)n);
	while (done < total) {
		ssize_t r = wr ? pwritev(f->fd, v, n, (off_t)(off + done)) :
				 preadv(f->fd, v, n, (off_t)(off + done));
		size_t k;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break; /* end of the backing file */
		done += (size_t)r;
		for (k = (size_t)r; n && k >= v[0].iov_len; n--) {
			k -= v[0].iov_len;
			memmove(v, v + 1, sizeof(*v) * (size_t)(n - 1));
		}
		if (n) {
			v[0].iov_base = (uint8_t *)v[0].iov_base + k;
			v[0].iov_len -= k;
		}
	}
	return (ssize_t)done;
}

/* O_DIRECT with unaligned guest buffers: go through an aligned copy, one
 * per request (requests run on several threads; Linux guests align). */
static ssize_t rw_bounce(struct blk_file *f, const struct iovec *iov, int n,
			 uint64_t off, int wr)
{
	size_t len = iov_total(iov, n), pos = 0;
	uint8_t *p = NULL;
	struct iovec one;
	ssize_t r;

	if (len > BLK_BOUNCE_MAX || posix_memalign((void **)&p, 4096, len))
		return -ENOMEM;
	if (wr)
		for (int i = 0; i < n; pos += iov[i].iov_len, i++)
			memcpy(p + pos, iov[i].iov_base, iov[i].iov_len);
	one = (struct iovec){ p, len };
	r = rw_full(f, &one, 1, off, wr);
	if (!wr && r > 0)
		for (int i = 0; i < n && pos < (size_t)r; i++) {
			size_t k = iov[i].iov_len;

			if (k > (size_t)r - pos)
				k = (size_t)r - pos;
			memcpy(iov[i].iov_base, p + pos, k);
			pos += k;
		}
	free(p);
	return r;
}

static ssize_t file_rw(struct blk_backend *b, const struct iovec *iov, int n,
		       uint64_t off, int wr)
{
	struct blk_file *f = (struct blk_file *)b;

	if (f->direct && !aligned(f, iov, n))
		return rw_bounce(f, iov, n, off, wr);
	return rw_full(f, iov, n, off, wr);
}

static ssize_t file_preadv(struct blk_backend *b, const struct iovec *iov,
			   int n, uint64_t off)
{
	return file_rw(b, iov, n, off, 0);
}

static ssize_t file_pwritev(struct blk_backend *b, const struct iovec *iov,
			    int n, uint64_t off)
{
	return file_rw(b, iov, n, off, 1);
}

static int file_flush(struct blk_backend *b)
{
	struct blk_file *f = (struct blk_file *)b;

	return fdatasync(f->fd) < 0 ? -errno : 0;
}

static int file_punch(struct blk_backend *b, uint64_t off, uint64_t len,
		      int mode)
{
	struct blk_file *f = (struct blk_file *)b;

	if (!f->can_punch)
		return -EOPNOTSUPP;
	if (fallocate(f->fd, mode, (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}

static int file_discard(struct blk_backend *b, uint64_t off, uint64_t len)
{
	return file_punch(b, off, len,
			  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
}

/* Zeros written the slow way, for file systems without either fallocate
 * mode (an aligned buffer: the file may be O_DIRECT). */
static int write_zeros(struct blk_file *f, uint64_t off, uint64_t len)
{
	size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
	void *z = NULL;
	int rc = 0;

	if (posix_memalign(&z, 4096, chunk))
		return -ENOMEM;
	memset(z, 0, chunk);
	while (len && rc == 0) {
		size_t n = len < chunk ? (size_t)len : chunk;

		rc = sys_pwrite_full(f->fd, z, n, (off_t)off);
		off += n;
		len -= n;
	}
	free(z);
	return rc;
}

/* Zeroes: ZERO_RANGE where the file system has it; else a hole (reads
 * as zeros; tmpfs has only that); else writing them. */
static int file_write_zeroes(struct blk_backend *b, uint64_t off, uint64_t len)
{
	int rc = file_punch(b, off, len,
			    FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);

	if (rc == -EOPNOTSUPP || rc == -EINVAL)
		rc = file_discard(b, off, len);
	if (rc == -EOPNOTSUPP || rc == -EINVAL)
		rc = write_zeros((struct blk_file *)b, off, len);
	return rc;
}

static void file_close(struct blk_backend *b)
{
	struct blk_file *f = (struct blk_file *)b;

	sys_close(f->fd);
	free(f);
}

static const struct blk_backend_ops file_ops = {
	.preadv = file_preadv,
	.pwritev = file_pwritev,
	.flush = file_flush,
	.discard = file_discard,
	.write_zeroes = file_write_zeroes,
	.close = file_close,
};

/* Size and logical block size of the open file or device. */
static int file_geometry(struct blk_file *f, const char *path, char *err,
			 size_t errlen)
{
	struct stat st;
	uint64_t size;
	int lbs = BLK_SECTOR;

	if (fstat(f->fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(f->fd, BLKGETSIZE64, &size) < 0)
			return -errno;
		if (ioctl(f->fd, BLKSSZGET, &lbs) < 0 || lbs < 512)
			lbs = BLK_SECTOR;
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		snprintf(err, errlen, "--disk %s: not a file or block device",
			 path);
		return -EINVAL;
	}
	if (size < BLK_SECTOR) {
		snprintf(err, errlen,
			 "--disk %s: smaller than one sector (%llu bytes)",
			 path, (unsigned long long)size);
		return -EINVAL;
	}
	f->b.size = size & ~(uint64_t)(BLK_SECTOR - 1);
	f->b.block_size = (uint32_t)lbs;
	f->can_punch = 1;
	return 0;
}

int blk_file_open(const struct blk_spec *spec, struct blk_backend **out,
		  char *err, size_t errlen)
{
	struct blk_file *f = calloc(1, sizeof(*f));
	int flags = (spec->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	int rc;

	if (!f)
		return -ENOMEM;
	if (spec->direct)
		flags |= O_DIRECT;
	f->fd = sys_open(spec->path, flags, 0);
	if (f->fd < 0) {
		rc = f->fd;
		snprintf(err, errlen, "--disk %s: %s%s", spec->path,
			 strerror(-rc),
			 rc == -EINVAL && spec->direct ?
				 " (the file system may not support O_DIRECT; "
				 "drop ',direct')" :
				 "");
		free(f);
		return rc;
	}
	rc = file_geometry(f, spec->path, err, errlen);
	if (rc < 0) {
		if (!err[0])
			snprintf(err, errlen, "--disk %s: %s", spec->path,
				 strerror(-rc));
		sys_close(f->fd);
		free(f);
		return rc;
	}
	f->b.ops = &file_ops;
	f->b.readonly = spec->readonly;
	/* O_DIRECT requests wait for the device: run them on the I/O
	 * threads. Through the page cache they mostly hit, and a thread hop
	 * costs more than the copy (measured: bench/blk.py). */
	f->b.parallel = spec->direct;
	f->direct = spec->direct;
	*out = &f->b;
	return 0;
}
