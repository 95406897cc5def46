/* main.c - the coffer binary's entry point: hands argv to the CLI dispatcher. */
#include "cli/cli.h"

int main(int argc, char **argv) { return cli_main(argc, argv); }
