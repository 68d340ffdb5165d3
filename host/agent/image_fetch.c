/* canopy-agent: the image download worker: libcurl into a thin datastore
 * file under a temporary name, SHA-256 on the way, Range resume after a
 * transient failure, then rename (checksum matched) or delete. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "datastore/ds.h"
#include "host/agent/agent.h"
#include "host/agent/image.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/sys.h"

/* Bytes gathered before one datastore write (a multiple of any sector). */
#define FETCH_CHUNK (1u << 20)
/* How often a backoff wait looks at the cancel flag (ms). */
#define FETCH_TICK_MS 50

struct fetch {
	struct agent_image *im;
	struct agent_ds_sess *sess;
	struct ds_host *h;
	struct ds_file f;
	int open; /* f is open */
	int created; /* the temporary file exists */
	EVP_MD_CTX *md;
	uint8_t *buf; /* FETCH_CHUNK bytes from ds_alloc */
	size_t buffered;
	uint64_t off; /* bytes written to the file before buf */
	uint64_t total; /* announced size; UINT64_MAX while unknown */
	uint64_t free_bytes;
	uint32_t sector;
	int first; /* no data yet in this attempt */
	int failed; /* a callback set im->code and im->msg */
	CURL *curl;
};

int agent_image_hex_parse(const char *hex, uint8_t out[32])
{
	unsigned v;

	if (!hex || strlen(hex) != 64)
		return -EINVAL;
	for (size_t i = 0; i < 32; i++) {
		if (!strchr("0123456789abcdefABCDEF", hex[2 * i]) ||
		    !strchr("0123456789abcdefABCDEF", hex[2 * i + 1]) ||
		    sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		out[i] = (uint8_t)v;
	}
	return 0;
}

void agent_image_hex_format(const uint8_t in[32], char out[65])
{
	for (size_t i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", in[i]);
}

static uint64_t got(const struct fetch *fx)
{
	return fx->off + fx->buffered;
}

static int fail(struct fetch *fx, int code, const char *fmt, ...)
	CN_PRINTF(3, 4);
static int fail(struct fetch *fx, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fx->im->msg, sizeof(fx->im->msg), fmt, ap);
	va_end(ap);
	fx->im->code = code;
	fx->failed = 1;
	return -1;
}

/* Join the volume; refuse names in use and a full datastore. Sets the
 * answer to ImageImport. */
static void prepare(struct fetch *fx)
{
	struct agent_image *im = fx->im;
	struct ds_inode ino;
	uint64_t nfree = 0;
	char err[400] = "";
	int rc;

	rc = agent_ds_sess_open(im->dev, im->slot, &fx->sess, err, sizeof(err));
	if (rc < 0) {
		im->accept_code = CN_UNAVAILABLE;
		snprintf(im->accept_msg, sizeof(im->accept_msg),
			 "cannot join datastore %s: %s", im->ds, err);
		return;
	}
	fx->h = agent_ds_sess_host(fx->sess);
	fx->sector = fx->h->ds->g.sector;
	if (ds_lookup(fx->h->ds, im->name, &ino) == 0) {
		im->accept_code = CN_ALREADY_EXISTS;
		snprintf(im->accept_msg, sizeof(im->accept_msg),
			 "file %s already exists on datastore %s; choose "
			 "another name",
			 im->name, im->ds);
	} else if (ds_lookup(fx->h->ds, im->tmp, &ino) == 0) {
		im->accept_code = CN_ALREADY_EXISTS;
		snprintf(im->accept_msg, sizeof(im->accept_msg),
			 "%s exists on datastore %s: another import of %s "
			 "runs, or one was interrupted (remove it with "
			 "canopy-ds rm)",
			 im->tmp, im->ds, im->name);
	} else if ((rc = ds_free_blocks(fx->h->ds, &nfree)) < 0) {
		im->accept_code = CN_UNAVAILABLE;
		snprintf(im->accept_msg, sizeof(im->accept_msg),
			 "cannot read the free space of datastore %s: %s",
			 im->ds, cn_strerror(rc));
	}
	fx->free_bytes = nfree * fx->h->ds->g.block_size;
}

/* Write buf[0..len) at off (zero chunks stay holes). */
static int flush(struct fetch *fx, size_t len)
{
	char err[400] = "";
	size_t i;
	int rc;

	if (agent_ds_sess_fenced(fx->sess))
		return fail(fx, CN_UNAVAILABLE,
			    "lost the datastore heartbeat (self-fence); "
			    "the download stopped");
	for (i = 0; i < len && !fx->buf[i]; i++)
		;
	if (i < len) {
		rc = ds_file_pwrite(&fx->f, fx->buf, len, fx->off, err,
				    sizeof(err));
		if (rc < 0)
			return fail(fx, cn_code_from_errno(rc),
				    "writing datastore %s: %s", fx->im->ds,
				    err);
	}
	fx->off += len;
	fx->buffered = 0;
	return 0;
}

/* The temporary file, once the size is known. */
static int create(struct fetch *fx)
{
	struct agent_image *im = fx->im;
	uint64_t padded =
		(fx->total + fx->sector - 1) / fx->sector * fx->sector;
	char err[400] = "";
	int rc;

	if (fx->total > im->max_bytes)
		return fail(fx, CN_RESOURCE_EXHAUSTED,
			    "the image is %" PRIu64 " bytes, over the limit "
			    "of %" PRIu64 " bytes (manager option "
			    "--image-max-bytes)",
			    fx->total, im->max_bytes);
	if (padded > fx->free_bytes)
		return fail(fx, CN_RESOURCE_EXHAUSTED,
			    "the image needs %" PRIu64 " bytes but datastore "
			    "%s has %" PRIu64 " bytes free",
			    padded, im->ds, fx->free_bytes);
	rc = ds_file_create(fx->h, agent_ds_sess_watch(fx->sess), im->tmp,
			    padded, 0, err, sizeof(err));
	if (rc == 0) {
		fx->created = 1;
		rc = ds_file_open(&fx->f, fx->h, agent_ds_sess_watch(fx->sess),
				  im->tmp, err, sizeof(err));
	}
	if (rc < 0)
		return fail(fx, cn_code_from_errno(rc),
			    "cannot create %s on datastore %s: %s", im->tmp,
			    im->ds, err);
	fx->open = 1;
	atomic_store(&im->total, fx->total);
	return 0;
}

/* The first data of an attempt: check the answer, learn the size. */
static int begin(struct fetch *fx)
{
	long code = 0;
	curl_off_t cl = -1;
	uint64_t have = got(fx);

	curl_easy_getinfo(fx->curl, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(fx->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (code == 206 && have > 0) {
		if (cl < 0 || have + (uint64_t)cl != fx->total)
			return fail(fx, CN_FAILED_PRECONDITION,
				    "the server's answer to the resume "
				    "request does not fit the %" PRIu64
				    " bytes it announced",
				    fx->total);
		return 0;
	}
	if (code != 200)
		return fail(fx, CN_FAILED_PRECONDITION,
			    "the server answered HTTP %ld", code);
	if (cl < 0)
		return fail(fx, CN_FAILED_PRECONDITION,
			    "the server sent no Content-Length; the size "
			    "must be known before the file is created");
	if (fx->created && (uint64_t)cl != fx->total)
		return fail(fx, CN_FAILED_PRECONDITION,
			    "the image changed size between attempts");
	/* A full answer (a server without Range support): start over. */
	fx->off = 0;
	fx->buffered = 0;
	if (!EVP_DigestInit_ex(fx->md, EVP_sha256(), NULL))
		return fail(fx, CN_INTERNAL, "cannot start SHA-256");
	fx->total = (uint64_t)cl;
	return fx->created ? 0 : create(fx);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
	struct fetch *fx = arg;
	size_t n = size * nmemb, k;

	if (fx->first) {
		fx->first = 0;
		if (begin(fx) < 0)
			return 0;
	}
	if (n > fx->total - got(fx)) {
		fail(fx, CN_FAILED_PRECONDITION,
		     "the server sent more than the %" PRIu64
		     " bytes it announced",
		     fx->total);
		return 0;
	}
	if (!EVP_DigestUpdate(fx->md, p, n)) {
		fail(fx, CN_INTERNAL, "SHA-256 failed");
		return 0;
	}
	for (size_t left = n; left; left -= k, p += k) {
		k = CN_MIN(left, (size_t)FETCH_CHUNK - fx->buffered);
		memcpy(fx->buf + fx->buffered, p, k);
		fx->buffered += k;
		if (fx->buffered == FETCH_CHUNK && flush(fx, FETCH_CHUNK) < 0)
			return 0;
	}
	atomic_store(&fx->im->done, got(fx));
	return n;
}

static int on_xfer(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
		   curl_off_t un)
{
	struct fetch *fx = arg;

	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return atomic_load(&fx->im->cancel) ? 1 : 0;
}

static int setup(struct fetch *fx, char *errbuf)
{
	struct agent_image *im = fx->im;
	const char *protos = im->allow_http ? "http,https" : "https";
	CURL *c = curl_easy_init();

	if (!c)
		return fail(fx, CN_RESOURCE_EXHAUSTED, "cannot start libcurl");
	fx->curl = c;
	if (curl_easy_setopt(c, CURLOPT_URL, im->url) ||
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, protos) ||
	    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, protos) ||
	    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L) ||
	    curl_easy_setopt(c, CURLOPT_MAXREDIRS,
			     (long)AGENT_IMAGE_REDIRS_MAX) ||
	    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) ||
	    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) ||
	    (im->ca_file && curl_easy_setopt(c, CURLOPT_CAINFO, im->ca_file)) ||
	    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE,
			     (curl_off_t)im->max_bytes) ||
	    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L) ||
	    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
			     (long)AGENT_IMAGE_CONNECT_S) ||
	    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L) ||
	    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
			     (long)AGENT_IMAGE_STALL_S) ||
	    curl_easy_setopt(c, CURLOPT_USERAGENT,
			     "canopy-agent/" AGENT_VERSION) ||
	    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf) ||
	    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data) ||
	    curl_easy_setopt(c, CURLOPT_WRITEDATA, fx) ||
	    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) ||
	    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer) ||
	    curl_easy_setopt(c, CURLOPT_XFERINFODATA, fx))
		return fail(fx, CN_INTERNAL,
			    "libcurl refused an option (needs 7.85 or later "
			    "with https support)");
	return 0;
}

static int transient(CURLcode rc, long http)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return 1;
	case CURLE_HTTP_RETURNED_ERROR:
		return http >= 500;
	default:
		return 0;
	}
}

/* The final error of curl code rc in im->code and im->msg. */
static int explain(struct fetch *fx, CURLcode rc, long http, const char *eb)
{
	const char *why = eb[0] ? eb : curl_easy_strerror(rc);

	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CONNECT_ERROR:
		return fail(fx, CN_FAILED_PRECONDITION,
			    "TLS verification of the server failed (%s); its "
			    "certificate must chain to the system CAs or to "
			    "the agent's --image-ca-file",
			    why);
	case CURLE_TOO_MANY_REDIRECTS:
		return fail(fx, CN_FAILED_PRECONDITION,
			    "more than %d redirects (%s); check the url",
			    AGENT_IMAGE_REDIRS_MAX, why);
	case CURLE_UNSUPPORTED_PROTOCOL:
		return fail(fx, CN_FAILED_PRECONDITION,
			    "a redirect leads to a scheme that is not "
			    "allowed (%s)",
			    why);
	case CURLE_FILESIZE_EXCEEDED:
		return fail(fx, CN_RESOURCE_EXHAUSTED,
			    "the image is over the limit of %" PRIu64
			    " bytes (manager option --image-max-bytes)",
			    fx->im->max_bytes);
	case CURLE_HTTP_RETURNED_ERROR:
		return fail(fx, http == 404 ? CN_NOT_FOUND : CN_UNAVAILABLE,
			    "the server answered HTTP %ld", http);
	default:
		return fail(fx, CN_UNAVAILABLE, "download failed: %s", why);
	}
}

/* Wait ms unless cancelled: 0, or -ECANCELED. */
static int backoff(struct fetch *fx, uint64_t ms)
{
	for (uint64_t t = 0; t < ms; t += FETCH_TICK_MS) {
		if (atomic_load(&fx->im->cancel))
			return -ECANCELED;
		sys_sleep_us(FETCH_TICK_MS * 1000);
	}
	return 0;
}

static int cancelled(struct fetch *fx)
{
	return fail(fx, CN_CANCELLED,
		    "cancelled by request; the partial file was deleted");
}

/* Attempts until the whole image is in, a permanent error or the retry
 * bound. 0 or -1 (im->code and im->msg set). */
static int download(struct fetch *fx)
{
	struct agent_image *im = fx->im;
	char errbuf[CURL_ERROR_SIZE], range[48];
	uint64_t wait_ms = AGENT_IMAGE_BACKOFF_MS;
	long http;
	CURLcode rc;

	if (setup(fx, errbuf) < 0)
		return -1;
	for (unsigned attempt = 0;; attempt++) {
		snprintf(range, sizeof(range), "%" PRIu64 "-", got(fx));
		if (curl_easy_setopt(fx->curl, CURLOPT_RANGE,
				     got(fx) ? range : NULL))
			return fail(fx, CN_INTERNAL, "libcurl refused Range");
		errbuf[0] = '\0';
		fx->first = 1;
		http = 0;
		rc = curl_easy_perform(fx->curl);
		curl_easy_getinfo(fx->curl, CURLINFO_RESPONSE_CODE, &http);
		if (fx->failed)
			return -1;
		if (rc == CURLE_OK && fx->first && begin(fx) < 0)
			return -1; /* an empty body: no data callback ran */
		if (rc == CURLE_OK && got(fx) == fx->total)
			return 0;
		if (rc == CURLE_ABORTED_BY_CALLBACK && atomic_load(&im->cancel))
			return cancelled(fx);
		if (rc == CURLE_OK)
			rc = CURLE_PARTIAL_FILE; /* ended short without error */
		if (!transient(rc, http) || attempt >= AGENT_IMAGE_RETRIES_MAX)
			return attempt && transient(rc, http) ?
				       fail(fx, CN_UNAVAILABLE,
					    "download failed after %u "
					    "retries: %s",
					    attempt,
					    errbuf[0] ?
						    errbuf :
						    curl_easy_strerror(rc)) :
				       explain(fx, rc, http, errbuf);
		atomic_fetch_add(&im->retries, 1);
		log_warn("agent", "image download interrupted; resuming",
			 "task=%s url=\"%s\" at=%" PRIu64
			 " retry=%u why=\"%s\"",
			 im->task_id, im->safe_url, got(fx), attempt + 1,
			 errbuf[0] ? errbuf : curl_easy_strerror(rc));
		if (backoff(fx, wait_ms) < 0)
			return cancelled(fx);
		wait_ms = CN_MIN(wait_ms * 2, AGENT_IMAGE_BACKOFF_MAX_MS);
	}
}

/* Write the tail, check the checksum, rename to the final name. */
static int finish(struct fetch *fx)
{
	struct agent_image *im = fx->im;
	uint8_t sum[32];
	unsigned len = 0;
	char err[400] = "", want[65];
	size_t tail = fx->buffered;
	int rc;

	if (tail) {
		tail = (tail + fx->sector - 1) / fx->sector * fx->sector;
		memset(fx->buf + fx->buffered, 0, tail - fx->buffered);
		if (flush(fx, tail) < 0)
			return -1;
	}
	ds_file_close(&fx->f);
	fx->open = 0;
	if (!EVP_DigestFinal_ex(fx->md, sum, &len) || len != 32)
		return fail(fx, CN_INTERNAL, "SHA-256 failed");
	agent_image_hex_format(sum, im->sha_hex);
	im->size = fx->total;
	if (im->check && memcmp(sum, im->want, 32) != 0) {
		agent_image_hex_format(im->want, want);
		return fail(fx, CN_DATA_LOSS,
			    "sha256 mismatch: expected %s, got %s; the "
			    "downloaded file was deleted",
			    want, im->sha_hex);
	}
	rc = ds_file_rename(fx->h, agent_ds_sess_watch(fx->sess), im->tmp,
			    im->name, err, sizeof(err));
	if (rc < 0)
		return fail(fx, cn_code_from_errno(rc),
			    "cannot rename %s to %s on datastore %s: %s",
			    im->tmp, im->name, im->ds, err);
	fx->created = 0;
	return 0;
}

static void cleanup(struct fetch *fx)
{
	char err[400] = "";

	if (fx->open)
		ds_file_close(&fx->f);
	if (fx->created && ds_file_remove(fx->h, agent_ds_sess_watch(fx->sess),
					  fx->im->tmp, err, sizeof(err)) < 0)
		log_warn("agent", "cannot delete a partial image",
			 "task=%s file=%s err=\"%s\"", fx->im->task_id,
			 fx->im->tmp, err);
	if (fx->curl)
		curl_easy_cleanup(fx->curl);
	if (fx->md)
		EVP_MD_CTX_free(fx->md);
	ds_free(fx->buf);
	agent_ds_sess_close(fx->sess);
}

static void post(struct agent_image *im, loop_post_fn fn)
{
	/* loop_post only fails for lack of memory: try again shortly. */
	while (loop_post(im->ag->loop, fn, im) < 0)
		sys_sleep_us(10000);
}

void *agent_image_worker(void *arg)
{
	struct fetch fx = { .im = arg, .total = UINT64_MAX };
	struct agent_image *im = fx.im;

	prepare(&fx);
	if (!im->accept_code) {
		fx.md = EVP_MD_CTX_new();
		fx.buf = ds_alloc(fx.h->ds, FETCH_CHUNK);
		if (!fx.md || !fx.buf ||
		    !EVP_DigestInit_ex(fx.md, EVP_sha256(), NULL)) {
			im->accept_code = CN_RESOURCE_EXHAUSTED;
			snprintf(im->accept_msg, sizeof(im->accept_msg),
				 "out of memory");
		}
	}
	if (im->accept_code) {
		cleanup(&fx);
		post(im, agent_image_accepted);
		return NULL;
	}
	post(im, agent_image_accepted);
	if (download(&fx) == 0 && finish(&fx) == 0)
		im->code = CN_OK;
	cleanup(&fx);
	post(im, agent_image_finished);
	return NULL;
}

int agent_images_init(struct agent *ag)
{
	const char *ca = ag->opts.image_ca_file;

	if (ca && access(ca, R_OK) < 0) {
		fprintf(stderr, "canopy-agent: --image-ca-file %s: %s\n", ca,
			strerror(errno));
		return -errno;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "canopy-agent: libcurl did not initialise\n");
		return -EIO;
	}
	return 0;
}
