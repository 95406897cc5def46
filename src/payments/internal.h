/* internal.h - what the files of src/payments share; not part of the module's contract. */
#ifndef COFFER_PAYMENTS_INTERNAL_H
#define COFFER_PAYMENTS_INTERNAL_H

#include "crypto/vault.h"
#include "payments/payments.h"
#include "store/sql/sql.h"

struct payments {
    struct sqldb *db;
    payments_vault_fn vault; /* the current master keys (they may be rotated while running) */
    void *vault_ctx;
};

/* Later versions of the "payments" schema, each defined next to the code that uses it:
 * 2 payment requests (requests.c), 3 customer-presented codes and merchant holds (paycodes.c).
 * Only .version is ignored here: payments.c numbers them. */
extern const struct sql_migration pay_migration_requests;
extern const struct sql_migration pay_migration_paycodes;

/* Takes a lock named `name` until tx ends (a row of pay_locks read FOR UPDATE; SQLite's
 * transactions are serial anyway). */
CF_WARN_UNUSED enum cf_err pay_lock(struct sqltx *tx, const char *name);

/* Commits when err is CF_OK, else rolls back; returns the outcome. */
CF_WARN_UNUSED enum cf_err pay_tx_end(struct sqltx *tx, enum cf_err err);
/* Runs one statement in its own transaction (committed when it succeeds). */
CF_WARN_UNUSED enum cf_err pay_exec1(struct payments *p, const char *sql, const struct sql_value *v,
                                     size_t n, int64_t *changes_out);
/* Runs one query in its own read transaction; *out is the caller's to free on CF_OK. */
CF_WARN_UNUSED enum cf_err pay_query1(struct payments *p, const char *sql,
                                      const struct sql_value *v, size_t n, struct sql_rows **out);
/* Copies text into a fixed buffer (truncating; callers check lengths before storing). */
void pay_copy(char *dst, size_t dst_bytes, const char *src);

/* Seals / opens a small secret under the master key, bound to aad. */
CF_WARN_UNUSED enum cf_err pay_seal(struct payments *p, const char *aad, const void *pt, size_t n,
                                    uint8_t *out, size_t out_bytes, size_t *out_len);
CF_WARN_UNUSED enum cf_err pay_open(struct payments *p, const char *aad, const uint8_t *ct,
                                    size_t n, char *out, size_t out_bytes);

#endif
