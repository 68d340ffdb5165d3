/*
 * The pure parts of canopy-agent: VM id and VmSpec checks, the spec file
 * (<run-dir>/vms/<id>/spec.pb) and the canopy-vmm command line built from a
 * spec. Nothing here touches the agent's state; any thread may call these.
 */
#ifndef CANOPY_HOST_AGENT_SPEC_H
#define CANOPY_HOST_AGENT_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "lib/compiler.h"
#include "proto/canopy_common.pb-c.h"

/* Longest VM id: [a-z0-9-], 1..63 characters. */
#define AGENT_VM_ID_MAX 63
/* Limits of a spec, the same as canopy-vmm's. */
#define AGENT_CPUS_MAX 64
#define AGENT_MEM_MIB_MIN 16
#define AGENT_MEM_MIB_MAX (1024ull * 1024)
#define AGENT_CMDLINE_MAX 4095
#define AGENT_PATH_MAX 1024
#define AGENT_DISKS_MAX 16
#define AGENT_DISK_SIZE_MAX (16ull << 40) /* 16 TiB */
#define AGENT_SERIAL_MAX 20 /* virtio-blk serial: 20 bytes */
#define AGENT_DS_FILE_MAX 127 /* a datastore file name */
/* Largest spec file read back. */
#define AGENT_SPEC_FILE_MAX (1u << 20)
/* Name of the spec file in a VM's directory. */
#define AGENT_SPEC_FILE "spec.pb"

/*
 * Whether id is a usable VM id: 1..63 characters of [a-z0-9-]. 0, or
 * -EINVAL with one sentence in msg (size len).
 */
CN_MUST_CHECK int agent_vm_id_check(const char *id, char *msg, size_t len);

/*
 * Check a spec before it is stored or run: name (<= 63 printable chars,
 * may be empty), cpus 1..64, memory 16..1048576 MiB, kernel and initrd
 * absolute paths without '..' or ',' (canopy-vmm's option syntax), cmdline
 * <= 4095 bytes, at most 16 disks. A disk path is an absolute host path,
 * a plain file name (kept in the VM's directory) or DATASTORE:FILE (a
 * file on a datastore given to the agent with --datastore). NICs give
 * -EOPNOTSUPP, the rest -EINVAL; the sentence in msg says what to change.
 */
CN_MUST_CHECK int agent_spec_check(const Canopy__V1__VmSpec *spec, char *msg,
				   size_t len);

/*
 * Split a datastore disk path "NAME:FILE": 1 with NAME copied to name
 * (size nlen) and *file pointing into path; 0 when path is not a
 * datastore path (absolute, or no ':'); -EINVAL when it is a malformed
 * one.
 */
CN_MUST_CHECK int agent_ds_path_split(const char *path, char *name, size_t nlen,
				      const char **file);

/* Where a datastore disk runs: its volume and the heartbeat slot its VMM
 * joins as (docs/vmm.md, "Disks on the datastore"). */
struct agent_ds_disk {
	const char *dev;
	uint32_t slot;
};

/*
 * Where a spec's disk lives on this host: path itself when absolute, else
 * vm_dir/path. 0 or -ENAMETOOLONG.
 */
CN_MUST_CHECK int agent_disk_path(const char *vm_dir,
				  const Canopy__V1__DiskSpec *d, char *out,
				  size_t len);

/*
 * Write spec to path atomically (temporary file, fsync, rename, fsync of
 * the directory), mode 0600. 0 or -errno.
 */
CN_MUST_CHECK int agent_spec_save(const char *path,
				  const Canopy__V1__VmSpec *spec);
/*
 * Read a spec file back and check it (agent_spec_check). *out is the
 * caller's to free with canopy__v1__vm_spec__free_unpacked(*out, NULL).
 * 0, -ENOENT, -EFBIG, -EBADMSG (not a VmSpec), -EINVAL (fails the check;
 * msg says why) or -errno.
 */
CN_MUST_CHECK int agent_spec_load(const char *path, Canopy__V1__VmSpec **out,
				  char *msg, size_t len);

/* ---- vmm.log (vmm_log.c): the VMM's stdout and stderr in the VM's
 * directory. mark is an offset: lines before it belong to earlier runs
 * and are never read. Any thread. */

/* The size of DIR/vmm.log (0 when missing): a mark for a new run. */
uint64_t agent_log_size(const char *dir);
/* Its last three lines after mark, joined with "; " (out[0] = 0 when there
 * are none). */
void agent_log_tail(const char *dir, uint64_t mark, char *out, size_t len);
/* The reason="..." of its last msg="vm stopped" line after mark; 0 or
 * -ENOENT. */
CN_MUST_CHECK int agent_log_reason(const char *dir, uint64_t mark, char *out,
				   size_t len);

/* A NULL-terminated argv whose strings are all malloc'd. */
struct agent_argv {
	char **v;
	size_t n, cap;
};

/*
 * The canopy-vmm command line for a VM (the one place that turns a spec
 * into options): vmm --name ID --kernel K [--initrd I] [--cmdline C]
 * --memory M --cpus N --serial file:VMDIR/console.log --control
 * control.sock [--disk path=P[,readonly][,direct][,serial=S]]... with a
 * datastore disk as --disk ds=DEV:FILE,host=SLOT[,readonly][,serial=S]
 * from ds[i] (ds may be NULL when no disk is on a datastore). The control
 * socket is relative: canopy-vmm runs with VMDIR as its working directory
 * (unix socket paths are limited to 107 bytes). The spec must have passed
 * agent_spec_check. 0 or -ENOMEM/-ENAMETOOLONG (-EINVAL: a datastore disk
 * without ds[i]); free with agent_argv_free (also after an error).
 */
CN_MUST_CHECK int agent_vmm_argv_build(const char *vmm, const char *vm_dir,
				       const char *vm_id,
				       const Canopy__V1__VmSpec *spec,
				       const struct agent_ds_disk *ds,
				       struct agent_argv *out);
void agent_argv_free(struct agent_argv *a);

/* This host's TLS credentials for migration streams in --pki-dir (written
 * by enrolment): AGENT_TLS_CA, AGENT_TLS_CERT, AGENT_TLS_KEY. */
#define AGENT_TLS_CA "ca.pem"
#define AGENT_TLS_CERT "host.pem"
#define AGENT_TLS_KEY "host.key"
/* 1 when pki_dir (may be NULL) holds all three files, else 0. */
int agent_tls_ready(const char *pki_dir);
/* Append --tls-ca DIR/ca.pem --tls-cert DIR/host.pem --tls-key
 * DIR/host.key when agent_tls_ready: 1 (added), 0 (not), or -ENOMEM. */
CN_MUST_CHECK int agent_vmm_argv_tls(const char *pki_dir, struct agent_argv *a);
/* Append a copy of s to a. 0 or -ENOMEM. */
CN_MUST_CHECK int agent_argv_add(struct agent_argv *a, const char *s);

#endif
