/* Snapshots: save a VM (vCPUs, irqchip, PIT, clock, devices, RAM) to a
 * versioned, checksummed file and restore it in a new process.
 *
 * File: a header, then sections {name, length, CRC-32C, body}, ending with
 * a section named "end". Layout in docs/snapshot-format.md. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "host/vmm/snapshot.h"
#include "host/vmm/vmm.h"
#include "lib/crc32c.h"
#include "lib/log.h"
#include "lib/sys.h"

/* Fill a section body from the VM: one per kind of state. */
static int save_cpu(struct vm *vm, unsigned i, struct buf *b)
{
	return vcpu_state_save(&vm->vcpus[i], b);
}

static int write_section(int fd, off_t *off, const char *name, const void *body,
			 uint64_t len)
{
	struct snap_sec s = { .len = len, .crc = crc32c(0, body, len) };
	int rc;

	snprintf(s.name, sizeof(s.name), "%s", name);
	rc = sys_pwrite_full(fd, &s, sizeof(s), *off);
	if (rc == 0 && len)
		rc = sys_pwrite_full(fd, body, len, *off + (off_t)sizeof(s));
	*off += (off_t)(sizeof(s) + len);
	return rc;
}

static int save_buf_section(int fd, off_t *off, const char *name, struct buf *b)
{
	int rc = write_section(fd, off, name, buf_ptr(b), buf_len(b));

	buf_reset(b);
	return rc;
}

/* Every state section but memory. */
static int save_state(struct vm *vm, int fd, off_t *off)
{
	struct buf b;
	char name[SNAP_NAME_LEN];
	int rc = 0;

	buf_init(&b, 0);
	for (unsigned i = 0; i < vm->ncpus && rc == 0; i++) {
		snprintf(name, sizeof(name), "cpu.%u", i);
		rc = save_cpu(vm, i, &b);
		if (rc == 0)
			rc = save_buf_section(fd, off, name, &b);
	}
	if (rc == 0)
		rc = vm_kvm_state_save(vm, &b);
	if (rc == 0)
		rc = save_buf_section(fd, off, "kvm", &b);
	for (unsigned i = 0; i < vm->ndevs && rc == 0; i++) {
		snprintf(name, sizeof(name), "dev.%s", vm->devs[i].ops->name);
		rc = vm->devs[i].ops->save(vm->devs[i].dev, &b);
		if (rc == 0)
			rc = save_buf_section(fd, off, name, &b);
	}
	buf_free(&b);
	return rc;
}

static int save_all(struct vm *vm, int fd, uint64_t *bytes)
{
	struct snap_hdr h = {
		.magic = SNAP_MAGIC,
		.version = SNAP_VERSION,
		.hdr_size = sizeof(h),
		.mem_bytes = vm->ram_size,
		.cpus = vm->ncpus,
		.created_ms = sys_real_ms(),
	};
	off_t off = sizeof(h);
	int rc;

	h.hdr_crc = crc32c(0, &h, offsetof(struct snap_hdr, hdr_crc));
	rc = sys_pwrite_full(fd, &h, sizeof(h), 0);
	if (rc == 0)
		rc = save_state(vm, fd, &off);
	if (rc == 0)
		rc = snap_mem_save(vm, fd, &off);
	if (rc == 0)
		rc = write_section(fd, &off, "end", NULL, 0);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	*bytes = (uint64_t)off;
	return rc;
}

int snapshot_save(struct vm *vm, const char *path, uint64_t *bytes,
		  uint64_t *us, char *err, size_t errlen)
{
	char tmp[4096];
	uint64_t t0 = sys_mono_ns();
	int was_running = vm->state == VM_RUNNING, fd, rc;

	if (vm->state != VM_RUNNING && vm->state != VM_PAUSED) {
		snprintf(err, errlen, "save: the VM is %s",
			 vm_state_name(vm->state));
		return -EBUSY;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.partial", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = sys_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "save: %s: %s", tmp, strerror(-fd));
		return fd;
	}
	if (was_running)
		vm_pause_all(vm);
	rc = save_all(vm, fd, bytes);
	if (was_running)
		vm_resume_all(vm);
	sys_close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		snprintf(err, errlen, "save: %s: %s (nothing was written)",
			 path, strerror(-rc));
		return rc;
	}
	*us = (sys_mono_ns() - t0) / 1000;
	log_info("vmm", "snapshot saved", "vm=%s path=%s bytes=%llu us=%llu",
		 vm->cfg.name, path, (unsigned long long)*bytes,
		 (unsigned long long)*us);
	return 0;
}

static int read_hdr(int fd, const char *path, struct snap_hdr *h, char *err,
		    size_t errlen)
{
	ssize_t n = sys_pread_full(fd, h, sizeof(*h), 0);

	if (n < 0) {
		snprintf(err, errlen, "snapshot %s: %s", path,
			 strerror((int)-n));
		return (int)n;
	}
	if ((size_t)n >= 8 && (size_t)n < sizeof(*h) &&
	    memcmp(h->magic, SNAP_MAGIC, 8) == 0) {
		snprintf(err, errlen, "snapshot %s: truncated header", path);
		return -EINVAL;
	}
	if ((size_t)n < sizeof(*h) || memcmp(h->magic, SNAP_MAGIC, 8) != 0) {
		snprintf(err, errlen, "snapshot %s: not a canopy-vmm snapshot",
			 path);
		return -EINVAL;
	}
	if (h->version != SNAP_VERSION || h->hdr_size != sizeof(*h)) {
		snprintf(err, errlen,
			 "snapshot %s: format version %u, this canopy-vmm "
			 "reads version %u",
			 path, h->version, SNAP_VERSION);
		return -EPROTO;
	}
	if (h->hdr_crc != crc32c(0, h, offsetof(struct snap_hdr, hdr_crc)) ||
	    h->cpus == 0 || h->cpus > VMM_MAX_VCPUS ||
	    h->mem_bytes % (1u << 20) ||
	    h->mem_bytes < ((uint64_t)VMM_MIN_MEM_MIB << 20)) {
		snprintf(err, errlen, "snapshot %s: corrupt header", path);
		return -EINVAL;
	}
	return 0;
}

int snapshot_peek(const char *path, uint64_t *mem_mib, unsigned *cpus,
		  char *err, size_t errlen)
{
	struct snap_hdr h;
	int fd = sys_open(path, O_RDONLY, 0), rc;

	if (fd < 0) {
		snprintf(err, errlen, "snapshot %s: %s", path, strerror(-fd));
		return fd;
	}
	rc = read_hdr(fd, path, &h, err, errlen);
	sys_close(fd);
	if (rc == 0) {
		*mem_mib = h.mem_bytes >> 20;
		*cpus = h.cpus;
	}
	return rc;
}

int snap_section_load(struct vm *vm, const char *name, const uint8_t *p,
		      size_t len)
{
	unsigned i;
	char extra;

	if (sscanf(name, "cpu.%u%c", &i, &extra) == 1)
		return i < vm->ncpus ? vcpu_state_load(&vm->vcpus[i], p, len) :
				       -EINVAL;
	if (strcmp(name, "kvm") == 0)
		return vm_kvm_state_load(vm, p, len);
	if (strncmp(name, "dev.", 4) == 0) {
		for (i = 0; i < vm->ndevs; i++)
			if (strcmp(vm->devs[i].ops->name, name + 4) == 0)
				return vm->devs[i].ops->load(vm->devs[i].dev, p,
							     len);
	}
	return -ENOENT;
}

/* Read the section at *off; memory goes straight into guest RAM. */
static int restore_section(struct vm *vm, int fd, off_t *off, int *done,
			   char *what, size_t whatlen)
{
	struct snap_sec s;
	uint8_t *body;
	ssize_t n = sys_pread_full(fd, &s, sizeof(s), *off);
	int rc;

	if (n != (ssize_t)sizeof(s))
		return n < 0 ? (int)n : -ENODATA;
	s.name[sizeof(s.name) - 1] = 0;
	snprintf(what, whatlen, "section '%s'", s.name);
	*off += (off_t)sizeof(s);
	if (strcmp(s.name, "end") == 0) {
		*done = 1;
		return s.len == 0 ? 0 : -EINVAL;
	}
	if (strcmp(s.name, "memory") == 0) {
		rc = snap_mem_load(vm, fd, *off, &s);
		*off += (off_t)s.len;
		return rc;
	}
	if (s.len > SNAP_MAX_STATE)
		return -EINVAL;
	body = malloc(s.len ? s.len : 1);
	if (!body)
		return -ENOMEM;
	n = sys_pread_full(fd, body, s.len, *off);
	rc = n != (ssize_t)s.len ? -ENODATA :
	     crc32c(0, body, s.len) != s.crc ?
				   -EBADMSG :
				   snap_section_load(vm, s.name, body, s.len);
	free(body);
	*off += (off_t)s.len;
	return rc;
}

int snapshot_restore(struct vm *vm, const char *path, char *err, size_t errlen)
{
	struct snap_hdr h;
	char what[64] = "header";
	off_t off = sizeof(h);
	int fd = sys_open(path, O_RDONLY, 0), rc, done = 0;

	if (fd < 0) {
		snprintf(err, errlen, "snapshot %s: %s", path, strerror(-fd));
		return fd;
	}
	rc = read_hdr(fd, path, &h, err, errlen);
	if (rc == 0 && (h.mem_bytes != vm->ram_size || h.cpus != vm->ncpus)) {
		snprintf(err, errlen,
			 "snapshot %s: taken with %u vCPUs and %llu MiB; this "
			 "VM has %u and %llu",
			 path, h.cpus, (unsigned long long)h.mem_bytes >> 20,
			 vm->ncpus, (unsigned long long)vm->cfg.mem_mib);
		rc = -EINVAL;
	} else if (rc == 0) {
		while (rc == 0 && !done)
			rc = restore_section(vm, fd, &off, &done, what,
					     sizeof(what));
		if (rc < 0)
			snprintf(
				err, errlen, "snapshot %s: %s: %s", path, what,
				rc == -ENODATA ? "truncated file" :
				rc == -EBADMSG ? "checksum mismatch (corrupt)" :
				rc == -ENOENT  ? "unknown section" :
						 "invalid contents");
	}
	sys_close(fd);
	return rc;
}
