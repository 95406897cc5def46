/*
 * setup.h - opening the identity side of a data directory: master keys, the identity database
 * (DATA/identity.db, or the PostgreSQL database named by --db), the notifier and the identity
 * service; and the commands that work on it (admin create, keys rotate, backup).
 */
#ifndef COFFER_CLI_SETUP_H
#define COFFER_CLI_SETUP_H

#include <stdbool.h>

#include "cli/config.h"
#include "crypto/vault.h"
#include "identity/identity.h"
#include "identity/notifier.h"
#include "store/sql/sql.h"

#define CLI_KEY_FILE_NAME "master.key"
#define CLI_IDENTITY_DB_NAME "identity.db"

struct cli_identity {
    struct vault *vault;
    struct sqldb *db;
    struct notifier *notifier;
    struct identity *identity;
    char key_path[CONFIG_PATH_BYTES_MAX]; /* "" when the keys came from COFFER_MASTER_KEYS */
};

/* Opens everything; create makes the master key file on first use. Messages go to stderr. */
CF_WARN_UNUSED enum cf_err cli_identity_open(const struct config *c, bool create,
                                             struct cli_identity *out);
void cli_identity_close(struct cli_identity *ci);

/* The database the identity tables live in: the PostgreSQL URL, or DATA/identity.db. */
void cli_identity_target(const struct config *c, char *out, size_t out_bytes);

struct api;
/* Opens the payments tables, applies the payment settings to api and finishes operations a
 * crash left half done (payments_setup.c). The writer must be running. */
CF_WARN_UNUSED enum cf_err cli_payments_open(const struct config *c, struct cli_identity *ci,
                                             struct api *api);
void cli_payments_close(struct api *api);

/* coffer admin create --login L --name N [--role R]; the password from COFFER_ADMIN_PASSWORD. */
int cli_cmd_admin(const struct config *c, int argc, char **argv);
/* coffer keys rotate: a new master key in the key file, then every data key re-wrapped. */
int cli_cmd_keys(const struct config *c, int argc, char **argv);
/* coffer backup --out DIR: consistent copies of the SQLite databases (not the key file). */
int cli_cmd_backup(const struct config *c, int argc, char **argv);
/* Checks the audit log's hash chain; prints a line; 0 when intact. */
int cli_audit_verify(const struct config *c);

#endif
