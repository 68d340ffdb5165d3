/*
 * canopy CLI: the API token from `canopy login` (kept per server in
 * ~/.config/canopy/tokens/, 0600) and reading a password without echo.
 * CANOPY_TOKEN, when set, is used instead of the stored token.
 */
#ifndef CANOPY_CLI_TOKEN_H
#define CANOPY_CLI_TOKEN_H

#include <stddef.h>

#include "lib/compiler.h"

/* Longest token kept (manager/auth.h AUTH_TOKEN_MAX). */
#define CLI_TOKEN_MAX 256
/* Longest password read (manager/auth.h AUTH_PW_MAX). */
#define CLI_PASSWORD_MAX 1024

/* The token for server ("host:port") into tok: CANOPY_TOKEN, else the
 * one stored in ~/.config/canopy/tokens/. 0, or -ENOENT when there is none. */
CN_MUST_CHECK int cli_token_load(const char *server, char *tok, size_t n);
/* Store tok for server (file 0600 in a 0700 directory). 0 or -errno. */
CN_MUST_CHECK int cli_token_save(const char *server, const char *tok);
/* Forget the stored token of server. 0, or -ENOENT if none. */
int cli_token_remove(const char *server);

/* A password: the first line of file (if not NULL), else from a terminal
 * with echo off after prompt, else one line of stdin. 0, -EINVAL (empty or
 * too long) or -errno. */
CN_MUST_CHECK int cli_password_read(const char *file, const char *prompt,
				    char *pw, size_t n);

#endif
