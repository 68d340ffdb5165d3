/* The audit log's hash chain: writing a line and verifying a file of them. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lib/audit_chain.h"
#include "lib/hex.h"

static int chain_hash(const uint8_t prev[AUDIT_HASH_LEN], const char *p,
		      size_t len, uint8_t out[AUDIT_HASH_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned outlen = 0;
	int ok;

	if (!ctx)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, prev, AUDIT_HASH_LEN) == 1 &&
	     EVP_DigestUpdate(ctx, p, len) == 1 &&
	     EVP_DigestFinal_ex(ctx, out, &outlen) == 1 &&
	     outlen == AUDIT_HASH_LEN;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -EIO;
}

int audit_chain_line(const uint8_t prev[AUDIT_HASH_LEN], const char *payload,
		     char *out, size_t n, uint8_t next[AUDIT_HASH_LEN])
{
	size_t len = strlen(payload);
	int err;

	if (len == 0 || strpbrk(payload, "\t\n"))
		return -EINVAL;
	if (len + 1 + 2 * AUDIT_HASH_LEN + 2 > n ||
	    len + 2 + 2 * AUDIT_HASH_LEN > AUDIT_LINE_MAX)
		return -ENOSPC;
	err = chain_hash(prev, payload, len, next);
	if (err)
		return err;
	memcpy(out, payload, len);
	out[len] = '\t';
	cn_hex_encode(out + len + 1, next, AUDIT_HASH_LEN);
	out[len + 1 + 2 * AUDIT_HASH_LEN] = '\n';
	out[len + 2 + 2 * AUDIT_HASH_LEN] = '\0';
	return (int)(len + 2 + 2 * AUDIT_HASH_LEN);
}

/* One line without its newline: checks it and moves the head on. */
static int check_line(struct audit_verify *v, const char *line, size_t len)
{
	uint8_t want[AUDIT_HASH_LEN], got[AUDIT_HASH_LEN];
	size_t body;

	if (len < 2 * AUDIT_HASH_LEN + 2)
		return -EBADMSG;
	body = len - 2 * AUDIT_HASH_LEN - 1;
	if (line[body] != '\t' || memchr(line, '\t', body))
		return -EBADMSG;
	if (cn_hex_decode(line + body + 1, got, AUDIT_HASH_LEN))
		return -EBADMSG;
	if (chain_hash(v->head, line, body, want))
		return -EIO;
	if (memcmp(want, got, AUDIT_HASH_LEN) != 0)
		return -EBADMSG;
	memcpy(v->head, got, AUDIT_HASH_LEN);
	v->lines++;
	return 0;
}

int audit_chain_verify_fd(int fd, struct audit_verify *v)
{
	char buf[2 * AUDIT_LINE_MAX];
	size_t have = 0, off;
	char *nl;
	ssize_t r;
	int err;

	memset(v, 0, sizeof(*v));
	for (;;) {
		r = read(fd, buf + have, sizeof(buf) - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		have += (size_t)r;
		off = 0;
		while ((nl = memchr(buf + off, '\n', have - off))) {
			if ((size_t)(nl - (buf + off)) + 1 > AUDIT_LINE_MAX)
				goto bad;
			err = check_line(v, buf + off,
					 (size_t)(nl - buf) - off);
			if (err == -EBADMSG)
				goto bad;
			if (err)
				return err;
			off = (size_t)(nl - buf) + 1;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
		if (r == 0)
			return have ? (v->bad_line = v->lines + 1, -EBADMSG) :
				      0;
		if (have >= AUDIT_LINE_MAX)
			goto bad;
	}
bad:
	v->bad_line = v->lines + 1;
	return -EBADMSG;
}
