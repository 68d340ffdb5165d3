/* canopy-agent: the canopy-vmm command line of a VM, built in one place. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/agent/spec.h"

void agent_argv_free(struct agent_argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	a->v = NULL;
	a->n = a->cap = 0;
}

static int push(struct agent_argv *a, const char *fmt, ...) CN_PRINTF(2, 3);

/* Append one formatted argument and keep the array NULL-terminated. */
static int push(struct agent_argv *a, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		char **v = realloc(a->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
	return 0;
}

static int push_disk(struct agent_argv *a, const char *vm_dir,
		     const Canopy__V1__DiskSpec *d,
		     const struct agent_ds_disk *ds)
{
	char path[AGENT_PATH_MAX + 320], name[AGENT_VM_ID_MAX + 1];
	const char *file = NULL;
	int rc = agent_ds_path_split(d->path, name, sizeof(name), &file);

	if (rc == 1 && (!ds || !ds->dev || !ds->slot))
		return -EINVAL;
	if (rc == 1) {
		rc = push(a, "--disk");
		return rc    ?:
			       push(a, "ds=%s:%s,host=%u%s%s%s", ds->dev, file,
				    ds->slot, d->readonly ? ",readonly" : "",
				    d->serial && *d->serial ? ",serial=" : "",
				    d->serial && *d->serial ? d->serial : "");
	}
	rc = agent_disk_path(vm_dir, d, path, sizeof(path));
	if (rc < 0)
		return rc;
	rc = push(a, "--disk");
	if (rc < 0)
		return rc;
	return push(a, "path=%s%s%s%s%s", path, d->readonly ? ",readonly" : "",
		    d->direct ? ",direct" : "",
		    d->serial && *d->serial ? ",serial=" : "",
		    d->serial && *d->serial ? d->serial : "");
}

int agent_argv_add(struct agent_argv *a, const char *s)
{
	return push(a, "%s", s);
}

int agent_vmm_argv_build(const char *vmm, const char *vm_dir, const char *vm_id,
			 const Canopy__V1__VmSpec *spec,
			 const struct agent_ds_disk *ds, struct agent_argv *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	rc = push(out, "%s", vmm);
	rc = rc ?: push(out, "--name");
	rc = rc ?: push(out, "%s", vm_id);
	rc = rc ?: push(out, "--kernel");
	rc = rc ?: push(out, "%s", spec->kernel);
	if (spec->initrd && *spec->initrd) {
		rc = rc ?: push(out, "--initrd");
		rc = rc ?: push(out, "%s", spec->initrd);
	}
	if (spec->cmdline && *spec->cmdline) {
		rc = rc ?: push(out, "--cmdline");
		rc = rc ?: push(out, "%s", spec->cmdline);
	}
	rc = rc ?: push(out, "--memory");
	rc = rc ?: push(out, "%llu", (unsigned long long)spec->memory_mib);
	rc = rc ?: push(out, "--cpus");
	rc = rc ?: push(out, "%u", spec->cpus);
	rc = rc ?: push(out, "--serial");
	rc = rc ?: push(out, "file:%s/console.log", vm_dir);
	rc = rc ?: push(out, "--control");
	rc = rc ?: push(out, "control.sock");
	for (size_t i = 0; !rc && i < spec->n_disks; i++)
		rc = push_disk(out, vm_dir, spec->disks[i], ds ? &ds[i] : NULL);
	return rc;
}

int agent_tls_ready(const char *pki_dir)
{
	static const char *const files[] = { AGENT_TLS_CA, AGENT_TLS_CERT,
					     AGENT_TLS_KEY };
	char path[AGENT_PATH_MAX + 16];

	if (!pki_dir || !*pki_dir)
		return 0;
	for (size_t i = 0; i < CN_ARRAY_SIZE(files); i++) {
		int n = snprintf(path, sizeof(path), "%s/%s", pki_dir,
				 files[i]);

		if (n < 0 || (size_t)n >= sizeof(path) ||
		    access(path, F_OK) != 0)
			return 0;
	}
	return 1;
}

int agent_vmm_argv_tls(const char *pki_dir, struct agent_argv *a)
{
	int rc;

	if (!agent_tls_ready(pki_dir))
		return 0;
	rc = push(a, "--tls-ca");
	rc = rc ?: push(a, "%s/%s", pki_dir, AGENT_TLS_CA);
	rc = rc ?: push(a, "--tls-cert");
	rc = rc ?: push(a, "%s/%s", pki_dir, AGENT_TLS_CERT);
	rc = rc ?: push(a, "--tls-key");
	rc = rc ?: push(a, "%s/%s", pki_dir, AGENT_TLS_KEY);
	return rc < 0 ? rc : 1;
}
