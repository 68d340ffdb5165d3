/*
 * CURVE key files of the agent bus: a host's (or the manager's) key pair
 * and, for a host, the manager's public key, as `key = "VALUE"` lines
 * (lib/config; Z85 has '#' and '=', so values are quoted):
 *
 *   public = "..."    this end's public key
 *   secret = "..."    its secret key (the file is 0600; never logged)
 *   server = "..."    a host's file only: the manager's public key
 *
 * Functions return 0 or a negative errno and leave a sentence in err that
 * never holds a secret key.
 */
#ifndef CANOPY_LIB_BUS_KEYS_H
#define CANOPY_LIB_BUS_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/bus.h"
#include "lib/compiler.h"

/* Keys as Z85 text, NUL-terminated; server_key "" when absent. */
struct bus_keys {
	char public_key[BUS_CURVE_KEY_LEN + 1];
	char secret_key[BUS_CURVE_KEY_LEN + 1];
	char server_key[BUS_CURVE_KEY_LEN + 1];
};

/* Is k a CURVE key in Z85 (BUS_CURVE_KEY_LEN characters that decode)? */
bool bus_key_valid(const char *k);
/* A new key pair (server_key left ""). -ENOTSUP without CURVE. */
CN_MUST_CHECK int bus_keys_generate(struct bus_keys *k);
/* The public key of a secret key. -EINVAL when secret is no key. */
CN_MUST_CHECK int bus_key_public(const char *secret,
				 char out[BUS_CURVE_KEY_LEN + 1]);
/* Read path: public and secret required, server only when want_server
 * (then required). A file others may read is refused (-EPERM). */
CN_MUST_CHECK int bus_keys_read(const char *path, bool want_server,
				struct bus_keys *k, char *err, size_t errlen);
/* Write k to path with mode 0600 through a temporary file and rename; an
 * existing path is -EEXIST unless replace. */
CN_MUST_CHECK int bus_keys_write(const char *path, const struct bus_keys *k,
				 bool replace, char *err, size_t errlen);

#endif
