/* Unit tests for manager/auth*: password hashes, tokens, privileges and grants. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "manager/auth.h"

static void test_pw_roundtrip(void **state)
{
	char h1[AUTH_PW_HASH_MAX], h2[AUTH_PW_HASH_MAX];

	assert_int_equal(auth_pw_hash("correct horse", h1, sizeof(h1)), 0);
	assert_int_equal(auth_pw_hash("correct horse", h2, sizeof(h2)), 0);
	assert_string_not_equal(h1, h2); /* fresh salt each time */
	assert_non_null(strstr(h1, "scrypt$15$8$1$"));
	assert_int_equal(auth_pw_verify("correct horse", h1), 0);
	assert_int_equal(auth_pw_verify("correct horse", h2), 0);
	assert_int_equal(auth_pw_verify("correct hors", h1), -EACCES);
	assert_int_equal(auth_pw_verify("correct horse!", h1), -EACCES);
	assert_int_equal(auth_pw_verify("", h1), -EACCES);
	assert_int_equal(auth_pw_verify(NULL, h1), -EACCES);
}

static void test_pw_bounds(void **state)
{
	char h[AUTH_PW_HASH_MAX], big[AUTH_PW_MAX + 2];

	assert_int_equal(auth_pw_hash("short", h, sizeof(h)), -EINVAL);
	assert_int_equal(auth_pw_hash(NULL, h, sizeof(h)), -EINVAL);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(auth_pw_hash(big, h, sizeof(h)), -EINVAL);
	big[AUTH_PW_MAX] = '\0';
	assert_int_equal(auth_pw_hash(big, h, sizeof(h)), 0);
	assert_int_equal(auth_pw_verify(big, h), 0);
	assert_int_equal(auth_pw_hash("long enough", h, 40), -ENOSPC);
}

/* Stored values from a hostile or broken etcd: refused, nothing derived. */
static void test_pw_stored_malformed(void **state)
{
	char h[AUTH_PW_HASH_MAX], bad[AUTH_PW_HASH_MAX + 16];
	static const char *const cases[] = {
		"",
		"md5$whatever",
		"scrypt$",
		"scrypt$15$8$1$",
		"scrypt$15$8$1$zz",
		"scrypt$15$8$1$00112233445566778899aabbccddeeff$00",
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(auth_pw_verify("whatever1", cases[i]),
				 -EINVAL);
	assert_int_equal(auth_pw_verify("whatever1", NULL), -EINVAL);
	assert_int_equal(auth_pw_hash("whatever1", h, sizeof(h)), 0);
	/* Cost raised to 2^30 (a 1 TiB demand) or lowered: refused. */
	snprintf(bad, sizeof(bad), "scrypt$30%s", h + strlen("scrypt$15"));
	assert_int_equal(auth_pw_verify("whatever1", bad), -EINVAL);
	snprintf(bad, sizeof(bad), "scrypt$10%s", h + strlen("scrypt$15"));
	assert_int_equal(auth_pw_verify("whatever1", bad), -EINVAL);
	/* Trailing bytes after the key. */
	snprintf(bad, sizeof(bad), "%s0", h);
	assert_int_equal(auth_pw_verify("whatever1", bad), -EINVAL);
}

static const uint8_t key1[AUTH_KEY_LEN] = { 1, 2, 3 };
static const uint8_t key2[AUTH_KEY_LEN] = { 9, 9, 9 };

static void test_token_roundtrip(void **state)
{
	char tok[AUTH_TOKEN_MAX];
	struct auth_token t;

	assert_int_equal(
		auth_token_make(key1, "alice", 7, 1000, tok, sizeof(tok)), 0);
	assert_int_equal(auth_token_check(key1, tok, 999, &t), 0);
	assert_string_equal(t.user, "alice");
	assert_int_equal(t.gen, 7);
	assert_int_equal(t.expiry, 1000);
	assert_int_equal(auth_token_check(key1, tok, 1000, &t), -EKEYEXPIRED);
	assert_int_equal(auth_token_check(key2, tok, 999, &t), -EACCES);
	assert_int_equal(auth_token_make(key1, "Bad:User", 1, 1000, tok,
					 sizeof(tok)),
			 -EINVAL);
	assert_int_equal(auth_token_make(key1, "alice", 1, 1000, tok, 40),
			 -ENOSPC);
}

/* Forged tokens: any changed byte before the MAC breaks it. */
static void test_token_forged(void **state)
{
	char tok[AUTH_TOKEN_MAX], f[AUTH_TOKEN_MAX];
	struct auth_token t;
	char *p;

	assert_int_equal(
		auth_token_make(key1, "bob", 1, 5000, tok, sizeof(tok)), 0);
	strcpy(f, tok);
	memcpy(f + 4, "bof", 3); /* another user */
	assert_int_equal(auth_token_check(key1, f, 10, &t), -EACCES);
	strcpy(f, tok);
	p = strchr(f + 4, ':') + 1; /* gen 1 -> 2 */
	*p = '2';
	assert_int_equal(auth_token_check(key1, f, 10, &t), -EACCES);
	strcpy(f, tok);
	f[strlen(f) - 1] ^= 1; /* the MAC itself */
	if (f[strlen(f) - 1] == ':')
		f[strlen(f) - 1] = '0';
	assert_int_not_equal(auth_token_check(key1, f, 10, &t), 0);
	assert_string_equal(t.user, "");
}

static void test_token_malformed(void **state)
{
	char big[AUTH_TOKEN_MAX + 10];
	struct auth_token t;
	static const char *const cases[] = {
		"",
		"Bearer x",
		"cn1:",
		"cn1:alice:1:2:00:",
		"cn2:alice:1:2:00:00000000000000000000000000000000000000000000000"
		"00000000000000000",
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(auth_token_check(key1, cases[i], 1, &t),
				 -EBADMSG);
	assert_int_equal(auth_token_check(key1, NULL, 1, &t), -EBADMSG);
	memset(big, 'a', sizeof(big) - 1);
	memcpy(big, "cn1:", 4);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(auth_token_check(key1, big, 1, &t), -EBADMSG);
}

static void test_privs(void **state)
{
	uint32_t m;
	const char *bad;
	size_t n;
	const struct auth_role_def *r = auth_builtin_roles(&n);

	assert_int_equal(auth_priv_parse("vm.power"), AUTH_VM_POWER);
	assert_int_equal(auth_priv_parse("vm.fly"), 0);
	assert_string_equal(auth_priv_name(AUTH_USER_MANAGE), "user.manage");
	assert_int_equal(auth_priv_parse_list("vm.power,system.read", &m, &bad),
			 0);
	assert_int_equal(m, AUTH_VM_POWER | AUTH_SYSTEM_READ);
	assert_int_equal(auth_priv_parse_list("vm.power,vm.fly", &m, &bad),
			 -EINVAL);
	assert_string_equal(bad, "vm.fly");
	assert_int_equal(auth_priv_parse_list("vm.power,,x", &m, &bad),
			 -EINVAL);
	assert_int_equal(n, 4);
	assert_string_equal(r[0].name, "Administrator");
	assert_int_equal(auth_builtin_role("ReadOnly")->privs,
			 AUTH_SYSTEM_READ);
	assert_null(auth_builtin_role("readonly"));
}

/* Inheritance: cluster > host > VM, the most specific grant wins. */
static void test_effective(void **state)
{
	const struct auth_grant g[] = {
		{ AUTH_OBJ_CLUSTER, NULL, "ann", AUTH_PRIV_ALL },
		{ AUTH_OBJ_VM, "secret", "ann", 0 },
		{ AUTH_OBJ_CLUSTER, NULL, "olga", AUTH_SYSTEM_READ },
		{ AUTH_OBJ_HOST, "h1", "olga", AUTH_VM_POWER },
		{ AUTH_OBJ_VM, "web", "vic", AUTH_VM_CONSOLE },
	};
	const struct auth_obj cluster = { AUTH_OBJ_CLUSTER, NULL, NULL };
	const struct auth_obj h1 = { AUTH_OBJ_HOST, "h1", NULL };
	const struct auth_obj h2 = { AUTH_OBJ_HOST, "h2", NULL };
	const struct auth_obj web = { AUTH_OBJ_VM, "web", "h1" };
	const struct auth_obj web2 = { AUTH_OBJ_VM, "web", "h2" };
	const struct auth_obj secret = { AUTH_OBJ_VM, "secret", "h1" };
	size_t n = sizeof(g) / sizeof(g[0]);

	assert_int_equal(auth_effective(g, n, "ann", &cluster), AUTH_PRIV_ALL);
	assert_int_equal(auth_effective(g, n, "ann", &web), AUTH_PRIV_ALL);
	assert_int_equal(auth_effective(g, n, "ann", &secret), 0);
	assert_int_equal(auth_effective(g, n, "olga", &h1), AUTH_VM_POWER);
	assert_int_equal(auth_effective(g, n, "olga", &web), AUTH_VM_POWER);
	assert_int_equal(auth_effective(g, n, "olga", &web2), AUTH_SYSTEM_READ);
	assert_int_equal(auth_effective(g, n, "olga", &h2), AUTH_SYSTEM_READ);
	assert_int_equal(auth_effective(g, n, "vic", &web), AUTH_VM_CONSOLE);
	assert_int_equal(auth_effective(g, n, "vic", &cluster), 0);
	assert_int_equal(auth_effective(g, n, "nobody", &web), 0);
	assert_int_equal(auth_effective(g, n, NULL, &web), 0);
}

static void test_user_names(void **state)
{
	char long_name[AUTH_USER_MAX + 2];

	assert_true(auth_user_valid("admin"));
	assert_true(auth_user_valid("j.doe@lab-1"));
	assert_false(auth_user_valid(""));
	assert_false(auth_user_valid("Admin"));
	assert_false(auth_user_valid("a:b"));
	assert_false(auth_user_valid("a b"));
	assert_false(auth_user_valid(NULL));
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_false(auth_user_valid(long_name));
	long_name[AUTH_USER_MAX] = '\0';
	assert_true(auth_user_valid(long_name));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pw_roundtrip),
		cmocka_unit_test(test_pw_bounds),
		cmocka_unit_test(test_pw_stored_malformed),
		cmocka_unit_test(test_token_roundtrip),
		cmocka_unit_test(test_token_forged),
		cmocka_unit_test(test_token_malformed),
		cmocka_unit_test(test_privs),
		cmocka_unit_test(test_effective),
		cmocka_unit_test(test_user_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
