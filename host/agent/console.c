/* canopy-agent: ConsoleRead from the manager: a slice of a VM's console.log. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/agent/agent.h"
#include "lib/bus.h"
#include "lib/err.h"
#include "lib/log.h"

static void refuse(struct agent *ag, uint64_t rid, int code, const char *msg)
{
	if (code != CN_NOT_FOUND && agent_bad_log_ok(ag))
		log_warn("agent", "console read refused",
			 "request=%llu msg=\"%s\"", (unsigned long long)rid,
			 msg);
	agent_reply(ag, rid, code, msg);
}

/*
 * Read at most max bytes at offset of the log in dir into buf. Fills
 * d's size. Bytes read or -errno (-ENOENT: the VM never ran here).
 */
static ssize_t log_read(const char *dir, uint64_t offset, uint8_t *buf,
			size_t max, Canopy__V1__ConsoleData *d)
{
	char path[AGENT_PATH_MAX + 16];
	struct stat st;
	ssize_t n = 0;
	int fd, rc = 0;

	if (snprintf(path, sizeof(path), "%s/console.log", dir) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out_close;
	}
	d->size = (uint64_t)st.st_size;
	if (offset < d->size) {
		n = pread(fd, buf, max, (off_t)offset);
		if (n < 0)
			rc = -errno;
	}
out_close:
	close(fd);
	return rc ? rc : n;
}

void agent_console_handle(struct agent *ag, const Canopy__V1__Envelope *env)
{
	const Canopy__V1__ConsoleRead *req = env->console_read;
	Canopy__V1__Envelope rep = CANOPY__V1__ENVELOPE__INIT;
	Canopy__V1__ConsoleData d = CANOPY__V1__CONSOLE_DATA__INIT;
	uint64_t rid = env->request_id;
	struct agent_vm *vm;
	size_t max;
	uint8_t *buf;
	char msg[512];
	ssize_t n;
	int rc;

	/* validate */
	if (agent_vm_id_check(req->vm_id, msg, sizeof(msg)) < 0) {
		refuse(ag, rid, CN_INVALID_ARGUMENT, msg);
		return;
	}
	vm = agent_vm_find(ag, req->vm_id);
	if (!vm) {
		snprintf(msg, sizeof(msg),
			 "VM %s does not exist on this host; create it first",
			 req->vm_id);
		refuse(ag, rid, CN_NOT_FOUND, msg);
		return;
	}
	max = req->max && req->max < AGENT_CONSOLE_READ_MAX ?
		      req->max :
		      AGENT_CONSOLE_READ_MAX;
	buf = malloc(max);
	if (!buf) {
		agent_reply(ag, rid, CN_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	/* act */
	n = log_read(vm->dir, req->offset, buf, max, &d);
	if (n == -ENOENT) {
		snprintf(msg, sizeof(msg),
			 "VM %s has not run on this host yet, so it has no "
			 "console output; start it first",
			 vm->id);
		agent_reply(ag, rid, CN_FAILED_PRECONDITION, msg);
		goto out;
	}
	if (n < 0) {
		rc = (int)n;
		snprintf(msg, sizeof(msg),
			 "cannot read the console log of VM %s: %s", vm->id,
			 cn_strerror(rc));
		refuse(ag, rid, cn_code_from_errno(rc), msg);
		goto out;
	}
	d.data.data = buf;
	d.data.len = (size_t)n;
	d.truncated_before = req->offset > d.size;
	d.next_offset = req->offset >= d.size ? d.size : req->offset + n;
	rep.body_case = CANOPY__V1__ENVELOPE__BODY_CONSOLE_DATA;
	rep.console_data = &d;
	rc = bus_client_reply(ag->bus, env, &rep);
	if (rc < 0)
		log_warn("agent", "console data not sent",
			 "request=%llu err=\"%s\"", (unsigned long long)rid,
			 cn_strerror(rc));
out:
	free(buf);
}
