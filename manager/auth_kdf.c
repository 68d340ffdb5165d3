/* canopy-managerd: password hashing off the loop thread (scrypt takes ~100 ms and 32 MiB). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lib/log.h"
#include "lib/loop.h"
#include "manager/api_internal.h"
#include "manager/auth_kdf.h"
#include "manager/manager.h"

static void job_free(struct kdf_job *j)
{
	OPENSSL_cleanse(j, sizeof(*j));
	free(j);
}

/* Loop thread: hand the results to the method, unless leadership (and
 * the user cache) went away meanwhile. */
static void job_done(void *arg)
{
	struct kdf_job *j = arg;

	if (!j->m->auth || !j->m->auth->loaded)
		api_fail(j->c, CN_UNAVAILABLE,
			 "this manager stopped leading while checking the "
			 "password; retry");
	else
		j->done(j);
	job_free(j);
}

static void *job_run(void *arg)
{
	struct kdf_job *j = arg;
	struct manager *m = j->m;

	if (j->do_verify)
		j->verify_rc = auth_pw_verify(j->verify_pw, j->verify_hash);
	if (j->do_hash)
		j->hash_rc = auth_pw_hash(j->new_pw, j->new_hash,
					  sizeof(j->new_hash));
	OPENSSL_cleanse(j->verify_pw, sizeof(j->verify_pw));
	OPENSSL_cleanse(j->new_pw, sizeof(j->new_pw));
	if (loop_post(m->l, job_done, j))
		job_free(j); /* the call is ended by the server's shutdown */
	__atomic_sub_fetch(&m->kdf_inflight, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

int mgr_kdf_submit(struct kdf_job *j)
{
	struct manager *m = j->m;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (__atomic_add_fetch(&m->kdf_inflight, 1, __ATOMIC_SEQ_CST) >
	    MGR_KDF_MAX) {
		__atomic_sub_fetch(&m->kdf_inflight, 1, __ATOMIC_SEQ_CST);
		return -EBUSY;
	}
	rc = -pthread_attr_init(&attr);
	if (!rc) {
		(void)pthread_attr_setdetachstate(&attr,
						  PTHREAD_CREATE_DETACHED);
		rc = -pthread_create(&t, &attr, job_run, j);
		pthread_attr_destroy(&attr);
	}
	if (rc)
		__atomic_sub_fetch(&m->kdf_inflight, 1, __ATOMIC_SEQ_CST);
	return rc;
}

void mgr_kdf_drain(struct manager *m)
{
	int i;

	for (i = 0;
	     i < 300 && __atomic_load_n(&m->kdf_inflight, __ATOMIC_SEQ_CST) > 0;
	     i++)
		usleep(10000);
}
