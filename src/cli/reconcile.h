/*
 * reconcile.h - `coffer reconcile FILE [--from D] [--to D]`: a gateway's settlement file
 * compared with the gateway operations in the service database (payments/reconcile.h says how).
 */
#ifndef COFFER_CLI_RECONCILE_H
#define COFFER_CLI_RECONCILE_H

#include "cli/config.h"

/* argv[2] is FILE; --from and --to are read from argv[3...] (the other flags were applied to c).
 * Prints one line per mismatch and a summary on stdout, errors on stderr. Returns 0 when every
 * row matched and nothing is missing, 1 when there are mismatches, 2 on an error (a bad file
 * or flag, a database that cannot be opened or read). */
int cli_cmd_reconcile(const struct config *c, int argc, char **argv);

#endif
