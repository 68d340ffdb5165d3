/*
 * canopy-managerd: pure checks of API request fields that are not names
 * or VM specs (those are manager/keys.h and manager/spec.h): image file
 * names and checksums. Shared by the handlers and the API fuzz harness
 * (tests/fuzz/fuzz_api.c). No state; any thread.
 */
#ifndef CANOPY_MANAGER_API_CHECK_H
#define CANOPY_MANAGER_API_CHECK_H

/* Longest image file name (the agent adds ".part" for the download). */
#define MGR_IMAGE_NAME_MAX 122

/* Whether s is an image file name on a datastore: 1..MGR_IMAGE_NAME_MAX
 * bytes of '/'-separated parts of [A-Za-z0-9._-], none empty, "." or
 * "..". 1 or 0; s must not be NULL. */
int mgr_image_name_valid(const char *s);

/* Whether s is a SHA-256 in hex (64 digits, either case) or empty; when it
 * is, out gets it in lower case (or ""). 1 or 0; s must not be NULL. */
int mgr_sha256_parse(const char *s, char out[65]);

#endif
