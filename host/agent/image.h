/*
 * canopy-agent: image import (docs/images.md). The loop side
 * (image_import.c) takes ImageImport and ImageCancel from the manager,
 * reports progress every second and sends ImageDone; the download itself
 * (image_fetch.c) runs in one worker thread per import: libcurl into a
 * thin datastore file under a temporary name, SHA-256 on the way,
 * resumed with a Range request after a transient failure, renamed to the
 * final name only when the checksum matched, deleted otherwise.
 */
#ifndef CANOPY_HOST_AGENT_IMAGE_H
#define CANOPY_HOST_AGENT_IMAGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "lib/compiler.h"
#include "lib/url.h"

struct agent;

/* Redirects followed at most. */
#define AGENT_IMAGE_REDIRS_MAX 5
/* Transient failures retried (with a Range request) at most. */
#define AGENT_IMAGE_RETRIES_MAX 5
/* First wait before a retry (ms), doubling up to the last. */
#define AGENT_IMAGE_BACKOFF_MS 200
#define AGENT_IMAGE_BACKOFF_MAX_MS 5000
/* Connect timeout, and a transfer below 1 byte/s for this long is a
 * transient failure (s). */
#define AGENT_IMAGE_CONNECT_S 10
#define AGENT_IMAGE_STALL_S 30
/* Progress report interval (ms). */
#define AGENT_IMAGE_PROGRESS_MS 1000
/* Imports running at once on one agent. */
#define AGENT_IMAGES_MAX 4
/* The temporary name is NAME + this suffix. */
#define AGENT_IMAGE_TMP_SUFFIX ".part"
#define AGENT_IMAGE_NAME_MAX (127 - 5)
/* Longest task id taken from the manager. */
#define AGENT_IMAGE_TASK_MAX 63

/* One import. The loop thread owns everything but the fields marked
 * "worker", which the worker writes before it posts. */
struct agent_image {
	struct agent_image *next;
	struct agent *ag;
	char task_id[AGENT_IMAGE_TASK_MAX + 1];
	char url[CN_URL_MAX + 1];
	char safe_url[CN_URL_MAX + 1]; /* credentials redacted: for logs */
	char ds[64];
	const char *dev; /* the volume (from --datastore) */
	const char *ca_file; /* --image-ca-file or NULL: system CAs */
	char name[128];
	char tmp[128 + sizeof(AGENT_IMAGE_TMP_SUFFIX)];
	uint8_t want[32]; /* expected SHA-256 */
	int check; /* want is set */
	uint64_t max_bytes;
	int allow_http;
	uint32_t slot; /* datastore heartbeat slot of the session */
	uint64_t reply_id; /* the ImageImport request, until answered */
	uint64_t timer; /* progress */
	pthread_t thread;
	int started; /* thread is joinable */
	atomic_int cancel;
	atomic_uint_least64_t done, total;
	atomic_uint retries;
	/* worker: the answer to ImageImport (0: accepted) */
	int accept_code;
	char accept_msg[512];
	/* worker: the result */
	int code; /* cn_code */
	char msg[1024];
	char sha_hex[65];
	uint64_t size;
};

/* Worker thread body (image_fetch.c): prepares (joins the volume, checks
 * names and space), posts agent_image_accepted, downloads, posts
 * agent_image_finished. */
void *agent_image_worker(void *arg);
/* Loop thread (image_import.c), posted by the worker. */
void agent_image_accepted(void *arg);
void agent_image_finished(void *arg);
/* Parse 64 hex digits into out[32]. 0 or -EINVAL. */
CN_MUST_CHECK int agent_image_hex_parse(const char *hex, uint8_t out[32]);
void agent_image_hex_format(const uint8_t in[32], char out[65]);

#endif
