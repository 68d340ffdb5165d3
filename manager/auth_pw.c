/* canopy-managerd: user passwords, hashed with scrypt and checked in constant time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "lib/hex.h"
#include "manager/auth.h"

#define PW_SALT 16
#define PW_KEY 32
/* N = 2^15, r = 8, p = 1: 32 MiB per hash (the memory-hard part). */
#define PW_LN 15
#define PW_R 8
#define PW_P 1
/* Bounds on a stored value's cost: nothing above what we write, nothing
 * far below it either (a weakened hash in etcd is refused too). */
#define PW_LN_MIN 14
#define PW_LN_MAX 17
#define PW_MAXMEM (256ull << 20)

static int derive(const char *pw, const uint8_t *salt, unsigned ln, unsigned r,
		  unsigned p, uint8_t *key)
{
	if (EVP_PBE_scrypt(pw, strlen(pw), salt, PW_SALT, (uint64_t)1 << ln, r,
			   p, PW_MAXMEM, key, PW_KEY) != 1)
		return -EIO;
	return 0;
}

static int pw_len_ok(const char *pw)
{
	size_t n;

	if (!pw)
		return -EINVAL;
	n = strnlen(pw, AUTH_PW_MAX + 1);
	return n >= AUTH_PW_MIN && n <= AUTH_PW_MAX ? 0 : -EINVAL;
}

int auth_pw_hash(const char *pw, char *out, size_t n)
{
	uint8_t salt[PW_SALT], key[PW_KEY];
	char salt_hex[2 * PW_SALT + 1], key_hex[2 * PW_KEY + 1];
	int err, len;

	err = pw_len_ok(pw);
	if (err)
		return err;
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return -EIO;
	err = derive(pw, salt, PW_LN, PW_R, PW_P, key);
	if (err)
		goto out_wipe;
	cn_hex_encode(salt_hex, salt, sizeof(salt));
	cn_hex_encode(key_hex, key, sizeof(key));
	len = snprintf(out, n, "scrypt$%u$%u$%u$%s$%s", PW_LN, PW_R, PW_P,
		       salt_hex, key_hex);
	err = len < 0 || (size_t)len >= n ? -ENOSPC : 0;
out_wipe:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(key_hex, sizeof(key_hex));
	return err;
}

/* One decimal field of at most 2 digits, then '$'. */
static int small_field(const char **s, unsigned *v)
{
	const char *p = *s;

	if (p[0] < '0' || p[0] > '9')
		return -EINVAL;
	*v = (unsigned)(p[0] - '0');
	p++;
	if (p[0] >= '0' && p[0] <= '9')
		*v = *v * 10 + (unsigned)(*p++ - '0');
	if (*p != '$')
		return -EINVAL;
	*s = p + 1;
	return 0;
}

int auth_pw_verify(const char *pw, const char *stored)
{
	uint8_t salt[PW_SALT], want[PW_KEY], got[PW_KEY];
	unsigned ln, r, p;
	const char *s;
	int err;

	if (!stored || strncmp(stored, "scrypt$", 7) != 0)
		return -EINVAL;
	s = stored + 7;
	if (small_field(&s, &ln) || small_field(&s, &r) || small_field(&s, &p))
		return -EINVAL;
	if (ln < PW_LN_MIN || ln > PW_LN_MAX || r != PW_R || p != PW_P)
		return -EINVAL;
	if (cn_hex_decode(s, salt, PW_SALT) || s[2 * PW_SALT] != '$')
		return -EINVAL;
	s += 2 * PW_SALT + 1;
	if (cn_hex_decode(s, want, PW_KEY) || s[2 * PW_KEY] != '\0')
		return -EINVAL;
	/* A password of a length we never accept cannot match; checking it
	 * still costs one derivation, so its timing tells nothing. */
	err = derive(pw && strnlen(pw, AUTH_PW_MAX + 1) <= AUTH_PW_MAX ? pw :
									 "",
		     salt, ln, r, p, got);
	if (!err && (pw_len_ok(pw) || CRYPTO_memcmp(got, want, PW_KEY) != 0))
		err = -EACCES;
	OPENSSL_cleanse(got, sizeof(got));
	OPENSSL_cleanse(want, sizeof(want));
	return err;
}

bool auth_user_valid(const char *name)
{
	size_t i, n;

	if (!name)
		return false;
	n = strnlen(name, AUTH_USER_MAX + 1);
	if (n == 0 || n > AUTH_USER_MAX)
		return false;
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '@' || c == '-'))
			return false;
	}
	return true;
}
