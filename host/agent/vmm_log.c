/* canopy-agent: what a VMM's log (vmm.log) says: its last lines and why
 * its VM stopped. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/agent/spec.h"
#include "lib/sys.h"

/* How much of vmm.log is read for a tail or a reason. */
#define LOG_TAIL_READ 4096

uint64_t agent_log_size(const char *dir)
{
	char path[AGENT_PATH_MAX + 16];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/vmm.log", dir);
	return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* Read the end of vmm.log, at most size - 1 bytes and nothing before the
 * mark (older runs), NUL-terminated. */
static int log_read_end(const char *dir, uint64_t mark, char *buf, size_t size)
{
	char path[AGENT_PATH_MAX + 16];
	off_t end, from;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/vmm.log", dir);
	fd = sys_open(path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		end = 0;
	from = end > (off_t)(size - 1) ? end - (off_t)(size - 1) : 0;
	if (from < (off_t)mark)
		from = (off_t)mark;
	n = from < end ? sys_pread_full(fd, buf, (size_t)(end - from), from) :
			 0;
	sys_close(fd);
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	return (int)n;
}

void agent_log_tail(const char *dir, uint64_t mark, char *out, size_t len)
{
	char buf[LOG_TAIL_READ + 1], *p;
	int n = log_read_end(dir, mark, buf, sizeof(buf)), lines = 0;
	size_t o = 0;

	out[0] = '\0';
	if (n <= 0)
		return;
	/* Back up over the last three non-empty lines. */
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	for (p = buf + n; p > buf; p--)
		if (p[-1] == '\n' && ++lines == 3)
			break;
	for (; *p && o + 3 < len; p++) {
		if (*p == '\n') {
			out[o++] = ';';
			out[o++] = ' ';
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
}

int agent_log_reason(const char *dir, uint64_t mark, char *out, size_t len)
{
	char buf[LOG_TAIL_READ + 1], *line = NULL, *p, *e;
	int n = log_read_end(dir, mark, buf, sizeof(buf));

	if (n <= 0)
		return -ENOENT;
	for (p = buf; (p = strstr(p, "msg=\"vm stopped\"")) != NULL; p++)
		line = p;
	if (!line || !(p = strstr(line, " reason=\"")))
		return -ENOENT;
	p += strlen(" reason=\"");
	e = strchr(p, '"');
	if (!e || memchr(p, '\n', (size_t)(e - p)))
		return -ENOENT;
	snprintf(out, len, "%.*s", (int)(e - p), p);
	return 0;
}
