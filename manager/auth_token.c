/* canopy-managerd: short-lived API tokens signed with HMAC-SHA256. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "lib/hex.h"
#include "manager/auth.h"

#define TOK_PREFIX "cn1:"
#define TOK_NONCE 12
#define TOK_MAC 32

static int mac(const uint8_t *key, const char *msg, size_t len, uint8_t *out)
{
	unsigned outlen = 0;

	if (!HMAC(EVP_sha256(), key, AUTH_KEY_LEN, (const uint8_t *)msg, len,
		  out, &outlen) ||
	    outlen != TOK_MAC)
		return -EIO;
	return 0;
}

int auth_token_make(const uint8_t *key, const char *user, uint64_t gen,
		    int64_t expiry, char *out, size_t n)
{
	uint8_t nonce[TOK_NONCE], sig[TOK_MAC];
	char nonce_hex[2 * TOK_NONCE + 1];
	int len, err;

	if (!auth_user_valid(user) || expiry < 0)
		return -EINVAL;
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return -EIO;
	cn_hex_encode(nonce_hex, nonce, sizeof(nonce));
	len = snprintf(out, n,
		       TOK_PREFIX "%s:%" PRIu64 ":%" PRId64 ":%s:", user, gen,
		       expiry, nonce_hex);
	if (len < 0 || (size_t)len + 2 * TOK_MAC >= n)
		return -ENOSPC;
	err = mac(key, out, (size_t)len, sig);
	if (err)
		return err;
	cn_hex_encode(out + len, sig, sizeof(sig));
	return 0;
}

/* A decimal number of at most 19 digits ending at ':'. */
static int num_field(const char **s, uint64_t *v)
{
	const char *p = *s;
	unsigned digits = 0;

	*v = 0;
	while (*p >= '0' && *p <= '9' && digits < 19) {
		*v = *v * 10 + (uint64_t)(*p++ - '0');
		digits++;
	}
	if (digits == 0 || *p != ':')
		return -EBADMSG;
	*s = p + 1;
	return 0;
}

/* The fields after the MAC was found good: user, gen, expiry. */
static int fields(const char *tok, struct auth_token *t)
{
	const char *s = tok + strlen(TOK_PREFIX), *colon;
	uint64_t expiry;
	size_t ulen;

	colon = strchr(s, ':');
	if (!colon)
		return -EBADMSG;
	ulen = (size_t)(colon - s);
	if (ulen == 0 || ulen > AUTH_USER_MAX)
		return -EBADMSG;
	memcpy(t->user, s, ulen);
	t->user[ulen] = '\0';
	if (!auth_user_valid(t->user))
		return -EBADMSG;
	s = colon + 1;
	if (num_field(&s, &t->gen) || num_field(&s, &expiry))
		return -EBADMSG;
	t->expiry = (int64_t)expiry;
	return 0;
}

int auth_token_check(const uint8_t *key, const char *tok, int64_t now,
		     struct auth_token *t)
{
	uint8_t want[TOK_MAC], got[TOK_MAC];
	size_t len, body;
	int err;

	memset(t, 0, sizeof(*t));
	if (!tok || strncmp(tok, TOK_PREFIX, strlen(TOK_PREFIX)) != 0)
		return -EBADMSG;
	len = strnlen(tok, AUTH_TOKEN_MAX);
	if (len >= AUTH_TOKEN_MAX || len <= 2 * TOK_MAC + strlen(TOK_PREFIX))
		return -EBADMSG;
	body = len - 2 * TOK_MAC;
	if (tok[body - 1] != ':' || cn_hex_decode(tok + body, got, TOK_MAC))
		return -EBADMSG;
	err = mac(key, tok, body, want);
	if (err)
		return err;
	if (CRYPTO_memcmp(want, got, TOK_MAC) != 0)
		return -EACCES;
	err = fields(tok, t);
	if (err)
		return err;
	return t->expiry <= now ? -EKEYEXPIRED : 0;
}
