/* canopy-agent: VM id and spec checks, the spec file, the VMM command line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/agent/spec.h"
#include "lib/err.h"
#include "lib/sys.h"

int agent_vm_id_check(const char *id, char *msg, size_t len)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0)
		return cn_errf(-EINVAL, msg, len,
			       "the VM id is empty; give 1 to %d characters of "
			       "a-z, 0-9 and '-'",
			       AGENT_VM_ID_MAX);
	if (n > AGENT_VM_ID_MAX)
		return cn_errf(
			-EINVAL, msg, len,
			"the VM id is %zu characters long; use at most %d", n,
			AGENT_VM_ID_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return cn_errf(
				-EINVAL, msg, len,
				"the VM id has character 0x%02x at offset "
				"%zu; use only a-z, 0-9 and '-'",
				(unsigned char)c, i);
	}
	return 0;
}

/* Whether path has a ".." component. */
static int has_dotdot(const char *p)
{
	for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2)
		if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
			return 1;
	return 0;
}

static int has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* An absolute host path canopy-vmm can take as an option value. */
static int check_abs_path(const char *what, const char *p, char *msg,
			  size_t len)
{
	if (!p || !*p)
		return cn_errf(-EINVAL, msg, len,
			       "%s is empty; give an absolute "
			       "path on the host",
			       what);
	if (p[0] != '/')
		return cn_errf(-EINVAL, msg, len,
			       "%s '%.200s' is not an absolute path; give one "
			       "that starts with '/'",
			       what, p);
	if (strlen(p) > AGENT_PATH_MAX)
		return cn_errf(-EINVAL, msg, len, "%s is longer than %d bytes",
			       what, AGENT_PATH_MAX);
	if (has_dotdot(p) || strchr(p, ',') || has_ctl(p))
		return cn_errf(-EINVAL, msg, len,
			       "%s '%.200s' has a '..' component, a ',' or a "
			       "control character; give a plain path",
			       what, p);
	return 0;
}

/* A file name inside the VM's directory: [A-Za-z0-9._-], no leading '.'. */
static int plain_name(const char *p)
{
	size_t n = strlen(p);

	if (n == 0 || n > 255 || p[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return 0;
	}
	return strcmp(p, AGENT_SPEC_FILE) != 0;
}

/* A datastore file name: 1..127 of [A-Za-z0-9._-/], no empty, '.' or
 * '..' part (the datastore's own rule, docs/datastore-format.md). */
static int ds_file_ok(const char *f)
{
	size_t n = strlen(f), part = 0;

	if (n == 0 || n > AGENT_DS_FILE_MAX)
		return 0;
	for (size_t i = 0; i <= n; i++) {
		char c = f[i];

		if (c == '/' || c == '\0') {
			if (part == 0 || (part == 1 && f[i - 1] == '.') ||
			    (part == 2 && f[i - 1] == '.' && f[i - 2] == '.'))
				return 0;
			part = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return 0;
		part++;
	}
	return 1;
}

int agent_ds_path_split(const char *path, char *name, size_t nlen,
			const char **file)
{
	const char *colon = path ? strchr(path, ':') : NULL;
	size_t n;
	char msg[8];

	if (!colon || path[0] == '/')
		return 0;
	n = (size_t)(colon - path);
	if (n >= nlen || n > AGENT_VM_ID_MAX)
		return -EINVAL;
	memcpy(name, path, n);
	name[n] = '\0';
	if (agent_vm_id_check(name, msg, sizeof(msg)) < 0 ||
	    !ds_file_ok(colon + 1))
		return -EINVAL;
	*file = colon + 1;
	return 1;
}

static int check_ds_disk(size_t i, const Canopy__V1__DiskSpec *d, char *msg,
			 size_t len)
{
	char name[AGENT_VM_ID_MAX + 1];
	const char *file;

	if (agent_ds_path_split(d->path, name, sizeof(name), &file) < 0)
		return cn_errf(-EINVAL, msg, len,
			       "disk %zu path '%.200s' is not DATASTORE:FILE "
			       "(a datastore name of a-z, 0-9 and '-', a file "
			       "name of A-Z, a-z, 0-9, '.', '_', '-' and '/' "
			       "without empty, '.' or '..' parts, at most %d "
			       "bytes)",
			       i, d->path, AGENT_DS_FILE_MAX);
	if (d->direct)
		return cn_errf(-EINVAL, msg, len,
			       "disk %zu is on a datastore, which is always "
			       "O_DIRECT; drop 'direct'",
			       i);
	return 0;
}

static int check_disk(size_t i, const Canopy__V1__DiskSpec *d, char *msg,
		      size_t len)
{
	char what[32];
	const char *p = d->path ? d->path : "";
	int rc;

	snprintf(what, sizeof(what), "disk %zu path", i);
	if (p[0] != '/' && strchr(p, ':')) {
		rc = check_ds_disk(i, d, msg, len);
		if (rc < 0)
			return rc;
	} else if (p[0] == '/') {
		rc = check_abs_path(what, p, msg, len);
		if (rc < 0)
			return rc;
	} else if (!plain_name(p)) {
		return cn_errf(
			-EINVAL, msg, len,
			"disk %zu path '%.200s' is neither an absolute "
			"path nor a plain file name (A-Z, a-z, 0-9, '.', "
			"'_', '-')",
			i, p);
	}
	if (d->size_bytes > AGENT_DISK_SIZE_MAX || d->size_bytes % 512)
		return cn_errf(-EINVAL, msg, len,
			       "disk %zu size %llu is not a multiple of 512 up "
			       "to 16 TiB",
			       i, (unsigned long long)d->size_bytes);
	if (d->serial && strlen(d->serial) > AGENT_SERIAL_MAX)
		return cn_errf(-EINVAL, msg, len,
			       "disk %zu serial is longer than %d characters",
			       i, AGENT_SERIAL_MAX);
	if (d->serial && *d->serial && !plain_name(d->serial))
		return cn_errf(-EINVAL, msg, len,
			       "disk %zu serial may hold only A-Z, a-z, 0-9, "
			       "'.', '_' and '-'",
			       i);
	return 0;
}

int agent_spec_check(const Canopy__V1__VmSpec *spec, char *msg, size_t len)
{
	int rc;

	if (!spec)
		return cn_errf(-EINVAL, msg, len,
			       "the command has no VM spec; send one");
	if (spec->name &&
	    (strlen(spec->name) > AGENT_VM_ID_MAX || has_ctl(spec->name)))
		return cn_errf(
			-EINVAL, msg, len,
			"the VM name is longer than %d characters or has "
			"control characters",
			AGENT_VM_ID_MAX);
	if (spec->cpus < 1 || spec->cpus > AGENT_CPUS_MAX)
		return cn_errf(-EINVAL, msg, len,
			       "cpus %u is out of range; give 1 to %d",
			       spec->cpus, AGENT_CPUS_MAX);
	if (spec->memory_mib < AGENT_MEM_MIB_MIN ||
	    spec->memory_mib > AGENT_MEM_MIB_MAX)
		return cn_errf(
			-EINVAL, msg, len,
			"memory %llu MiB is out of range; give %d to %llu",
			(unsigned long long)spec->memory_mib, AGENT_MEM_MIB_MIN,
			AGENT_MEM_MIB_MAX);
	rc = check_abs_path("kernel", spec->kernel, msg, len);
	if (rc < 0)
		return rc;
	if (spec->initrd && *spec->initrd) {
		rc = check_abs_path("initrd", spec->initrd, msg, len);
		if (rc < 0)
			return rc;
	}
	if (spec->cmdline && strlen(spec->cmdline) > AGENT_CMDLINE_MAX)
		return cn_errf(-EINVAL, msg, len,
			       "cmdline is longer than %d bytes",
			       AGENT_CMDLINE_MAX);
	if (spec->n_nics)
		return cn_errf(-EOPNOTSUPP, msg, len,
			       "the spec has %zu NICs; this agent runs VMs "
			       "without network interfaces (remove them)",
			       spec->n_nics);
	if (spec->n_disks > AGENT_DISKS_MAX)
		return cn_errf(-EINVAL, msg, len, "%zu disks; at most %d",
			       spec->n_disks, AGENT_DISKS_MAX);
	for (size_t i = 0; i < spec->n_disks; i++) {
		rc = check_disk(i, spec->disks[i], msg, len);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int agent_disk_path(const char *vm_dir, const Canopy__V1__DiskSpec *d,
		    char *out, size_t len)
{
	int n = d->path[0] == '/' ?
			snprintf(out, len, "%s", d->path) :
			snprintf(out, len, "%s/%s", vm_dir, d->path);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int agent_spec_save(const char *path, const Canopy__V1__VmSpec *spec)
{
	size_t n = canopy__v1__vm_spec__get_packed_size(spec);
	uint8_t *buf = malloc(n ? n : 1);
	int rc;

	if (!buf)
		return -ENOMEM;
	canopy__v1__vm_spec__pack(spec, buf);
	rc = sys_write_file_atomic(path, buf, n, 0600);
	free(buf);
	return rc;
}

int agent_spec_load(const char *path, Canopy__V1__VmSpec **out, char *msg,
		    size_t len)
{
	char *data;
	size_t n;
	Canopy__V1__VmSpec *spec;
	int rc = sys_read_file(path, AGENT_SPEC_FILE_MAX, &data, &n);

	if (rc < 0)
		return cn_errf(rc, msg, len, "%s: %s", path, cn_strerror(rc));
	spec = canopy__v1__vm_spec__unpack(NULL, n, (const uint8_t *)data);
	free(data);
	if (!spec)
		return cn_errf(-EBADMSG, msg, len, "%s: not a VmSpec", path);
	rc = agent_spec_check(spec, msg, len);
	if (rc < 0) {
		canopy__v1__vm_spec__free_unpacked(spec, NULL);
		return rc;
	}
	*out = spec;
	return 0;
}
