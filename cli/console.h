/*
 * `canopy vm console`, shared between the output side (cmd_vm_console.c:
 * ReadConsole, the tail, --follow) and the input side
 * (cmd_vm_console_in.c: WriteConsole from a pipe, a file or an interactive
 * terminal). Main's thread only.
 */
#ifndef CANOPY_CLI_CONSOLE_H
#define CANOPY_CLI_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/cli.h"

/* Most bytes one WriteConsole carries (the server's limit). */
#define CLI_CONSOLE_WRITE_MAX 4096u
/* Output polling while typing: this fast right after input or output,
 * doubling while idle up to the slow interval. */
#define CLI_CONSOLE_POLL_FAST_MS 20u
#define CLI_CONSOLE_POLL_SLOW_MS 500u
/* Input from a pipe or file: after its end, output is still printed until
 * none came for this long. */
#define CLI_CONSOLE_LINGER_MS 1500u
/* The interactive escape: Ctrl-] quits, as in telnet and virsh. */
#define CLI_CONSOLE_ESCAPE 0x1d

/* What one `vm console` has read so far. */
struct cli_console {
	struct cli *c;
	const char *name;
	uint64_t offset; /* next byte to ask for */
	char *json_text; /* -o json without --follow: everything, escaped */
	size_t json_len;
	bool follow; /* print each slice as it comes (JSON: one per line) */
	bool raw; /* an interactive terminal: bytes as they are */
};

/* Read and print from st->offset until the end the server reports. *got
 * is set when there were new bytes. 0 or -errno (recorded). */
CN_MUST_CHECK int cli_console_drain(struct cli_console *st, bool *got);
/* Start at the last CLI_CONSOLE_TAIL bytes (tail) or at the end (tail
 * false: only what comes from now on). 0 or -errno (recorded). */
CN_MUST_CHECK int cli_console_start(struct cli_console *st, bool tail);
/* Whether the VM is still up (1), stopped (0) or -errno (recorded). */
CN_MUST_CHECK int cli_console_vm_up(struct cli_console *st);

/*
 * Send the bytes of fd (a pipe or a file; `--input`, or stdin when piped)
 * with WriteConsole, in order, while printing new output; after fd's end,
 * print output until none came for CLI_CONSOLE_LINGER_MS. A full input
 * queue in the VMM (RESOURCE_EXHAUSTED) is waited out. 0 or -errno
 * (recorded).
 */
CN_MUST_CHECK int cli_console_input(struct cli_console *st, int fd);
/*
 * The interactive console on a terminal (stdin and stdout): raw mode on
 * stdin (restored on every way out, SIGINT, SIGTERM and SIGHUP included),
 * keys sent as they come, output printed as it is, Ctrl-] quits, the end
 * of the VM ends it too. 0 or -errno (recorded).
 */
CN_MUST_CHECK int cli_console_interactive(struct cli_console *st);

#endif
