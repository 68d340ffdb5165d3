/*
 * `canopy cluster init` and `canopy cluster issue-cert` (cmd_cluster_pki.c):
 * the cluster PKI written under a manager's state directory on the machine
 * the CLI runs on (see lib/pki.h for the layout). Both return 0 or a
 * negative errno with the failure recorded through cli_fail().
 */
#ifndef CANOPY_CLI_CLUSTER_PKI_H
#define CANOPY_CLI_CLUSTER_PKI_H

#include "cli/cli.h"

/* Options of `cluster init`: --state-dir, --name, --san (repeatable),
 * --force. */
extern const struct cli_optdef cli_cluster_init_opts[];
/* Options of `cluster issue-cert NAME`: --state-dir, --san, --usage,
 * --force. */
extern const struct cli_optdef cli_cluster_issue_opts[];

CN_MUST_CHECK int cli_cluster_init(struct cli *c, const struct cli_args *a);
CN_MUST_CHECK int cli_cluster_issue_cert(struct cli *c,
					 const struct cli_args *a);

#endif
