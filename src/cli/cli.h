/*
 * cli.h - the coffer command line: serve, init, verify, version, routes.
 *
 * cli_main parses the subcommand and its flags, loads configuration (flags over COFFER_*
 * environment variables over the config file over defaults) and runs the subcommand. It returns
 * the process exit code: 0 on success, 1 when verification finds a problem or a command fails,
 * 2 on a usage error.
 */
#ifndef COFFER_CLI_CLI_H
#define COFFER_CLI_CLI_H

int cli_main(int argc, char **argv);

#endif
