/*
 * config.h - Coffer's settings and where they come from.
 *
 * Precedence, highest first: command-line flags, COFFER_* environment variables, the config
 * file (--config FILE or COFFER_CONFIG; `key = value` lines, # comments), built-in defaults:
 *
 *   key           env                  default          meaning
 *   data          COFFER_DATA          ./var            data directory (database, token, lock)
 *   listen        COFFER_LISTEN        127.0.0.1:8080   HOST:PORT to serve on
 *   log_level     COFFER_LOG_LEVEL     info             debug, info, warn, error
 *   http_threads  COFFER_HTTP_THREADS  2                HTTP event-loop threads (1..64)
 *   readers       COFFER_READERS       4                read connections (1..16)
 *   assets        COFFER_ASSETS        POINTS:0         operator assets, CODE:SCALE,...
 *   db            COFFER_DB            (data dir)       storage location; postgresql:// later
 *
 * COFFER_OPERATOR_TOKEN is read only by `serve`/`init` on first start (see cli.c), never from
 * the config file, so the token is not written into a file an operator may share.
 */
#ifndef COFFER_CLI_CONFIG_H
#define COFFER_CLI_CONFIG_H

#include <stdbool.h>

#include "core/assert.h"
#include "core/error.h"
#include "core/limits.h"

struct config {
    char data[CONFIG_PATH_BYTES_MAX];
    char listen[256];
    char log_level[16];
    unsigned http_threads;
    unsigned readers;
    char assets[512];
    char db[CONFIG_PATH_BYTES_MAX];
    char config_path[CONFIG_PATH_BYTES_MAX];
};

void config_defaults(struct config *c);

/* Applies one key/value; CF_ERR_CONFIG with a message on stderr when invalid. */
CF_WARN_UNUSED enum cf_err config_set(struct config *c, const char *key, const char *value);

/* Reads the config file named by c->config_path (no-op when empty). */
CF_WARN_UNUSED enum cf_err config_load_file(struct config *c);

/* Applies COFFER_* variables. */
CF_WARN_UNUSED enum cf_err config_load_env(struct config *c);

#endif
