/* canopy CLI: the stored API token per server, and passwords read without echo. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/token.h"
#include "cli/trust.h"

/* ~/.config/canopy/tokens/SERVER (the trusted CAs' naming, cli/trust.h). */
static int token_path(const char *server, char *buf, size_t n, char *dir,
		      size_t dn)
{
	char name[CLI_ADDR_MAX + 8];
	int len;

	if (cli_config_subdir("tokens", dir, dn) ||
	    cli_trust_file_name(server, name, sizeof(name)))
		return -ENOENT;
	len = snprintf(buf, n, "%s/%.*s", dir, (int)(strlen(name) - 4), name);
	return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

/* The first line of fd into buf. */
static int read_line(int fd, char *buf, size_t n)
{
	size_t have = 0;
	ssize_t r;

	while (have + 1 < n) {
		r = read(fd, buf + have, n - 1 - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		have += (size_t)r;
		if (memchr(buf, '\n', have))
			break;
	}
	buf[have] = '\0';
	if (have + 1 >= n && !memchr(buf, '\n', have))
		return -EINVAL; /* too long: never cut */
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] ? 0 : -EINVAL;
}

int cli_token_load(const char *server, char *tok, size_t n)
{
	const char *env = getenv("CANOPY_TOKEN");
	char path[1024], dir[1024];
	int fd, rc;

	if (env && env[0]) {
		snprintf(tok, n, "%s", env);
		return 0;
	}
	if (token_path(server, path, sizeof(path), dir, sizeof(dir)))
		return -ENOENT;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	rc = read_line(fd, tok, n);
	close(fd);
	return rc ? -ENOENT : 0;
}

int cli_token_save(const char *server, const char *tok)
{
	char path[1024], dir[1024], tmp[1100];
	size_t len = strlen(tok);
	int fd, rc;

	rc = token_path(server, path, sizeof(path), dir, sizeof(dir));
	if (rc)
		return rc;
	cli_mkdir_private(dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = write(fd, tok, len) == (ssize_t)len && write(fd, "\n", 1) == 1 ?
		     0 :
		     -EIO;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

int cli_token_remove(const char *server)
{
	char path[1024], dir[1024];

	if (token_path(server, path, sizeof(path), dir, sizeof(dir)))
		return -ENOENT;
	return unlink(path) ? -errno : 0;
}

int cli_password_read(const char *file, const char *prompt, char *pw, size_t n)
{
	struct termios saved, quiet;
	int fd, rc;

	if (file) {
		fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		rc = read_line(fd, pw, n);
		close(fd);
		return rc;
	}
	if (!isatty(STDIN_FILENO))
		return read_line(STDIN_FILENO, pw, n);
	if (tcgetattr(STDIN_FILENO, &saved))
		return -errno;
	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	fprintf(stderr, "%s", prompt);
	fflush(stderr);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet))
		return -errno;
	rc = read_line(STDIN_FILENO, pw, n);
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	fputc('\n', stderr);
	return rc;
}
