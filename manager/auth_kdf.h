/*
 * canopy-managerd: password hashing and checking on short-lived threads,
 * so that the loop thread never spends scrypt's ~100 ms. At most
 * MGR_KDF_MAX run at once (a flood of logins is refused, not queued).
 * The call stays alive meanwhile: it is ended only by the job's done().
 */
#ifndef CANOPY_MANAGER_AUTH_KDF_H
#define CANOPY_MANAGER_AUTH_KDF_H

#include <stdbool.h>

#include "manager/auth.h"

struct manager;
struct api_call;

#define MGR_KDF_MAX 4

struct kdf_job {
	struct manager *m;
	struct api_call *c;
	/* Loop thread, with the results; must end c. Not called (c ended
	 * UNAVAILABLE instead) when leadership went away meanwhile. */
	void (*done)(struct kdf_job *j);
	bool do_verify; /* verify_pw against verify_hash -> verify_rc */
	char verify_pw[AUTH_PW_MAX + 1];
	char verify_hash[AUTH_PW_HASH_MAX];
	int verify_rc;
	bool do_hash; /* hash new_pw -> new_hash, hash_rc */
	char new_pw[AUTH_PW_MAX + 1];
	char new_hash[AUTH_PW_HASH_MAX];
	int hash_rc;
	/* the method's own fields */
	char user[AUTH_USER_MAX + 1];
	char desc[256];
};

/* Start j (heap; owned by the job from here on success). 0, -EBUSY (too
 * many at once) or -errno; on failure the caller still owns j. Loop
 * thread. */
CN_MUST_CHECK int mgr_kdf_submit(struct kdf_job *j);

/* Wait (up to 3 s) until no job thread runs (shutdown). */
void mgr_kdf_drain(struct manager *m);

#endif
