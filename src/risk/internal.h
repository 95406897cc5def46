/*
 * internal.h - what the risk stores (freeze, lists, kyc, decisions, cases, rules_store) share;
 * not part of the layer's interface, included only by the .c files of src/risk.
 *
 * Schemas: a store writes its tables once, with %1$s for the blob type and %2$s for the row key
 * (an auto-incrementing integer primary key); risk_schema_migrate fills both in for each backend.
 * Sealing: a store seals personal data and free text with the current master key (key id 0 of
 * its vault callback) under an AAD naming the row and the column, and opens it with the key the
 * sealed bytes name; what does not open is CF_ERR_CORRUPT. Checks: the party, token and text
 * rules the stores' headers document, in one place, with flags where the stores differ.
 */
#ifndef COFFER_RISK_INTERNAL_H
#define COFFER_RISK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"

struct sqldb;
struct sqltx;
struct vault;

/* A store's master keys: key_id 0 asks for the current key (see the stores' *_vault_fn). */
typedef const struct vault *(*risk_vault_fn)(void *ctx, uint32_t key_id);

/* The largest schema text once filled in. */
#define RISK_SCHEMA_BYTES_MAX 4096

/* Migrates schema (see above) as version 1 of name on db. */
CF_WARN_UNUSED enum cf_err risk_schema_migrate(struct sqldb *db, const char *name,
                                               const char *schema);
/* Later versions of a store's schema, at most this many. */
#define RISK_SCHEMA_STEPS_MAX 8
/* Migrates schema as version 1, then later[i] as version 2 + i: statements both backends take
 * as they are (ALTER TABLE ... ADD COLUMN ... NOT NULL DEFAULT ..., CREATE INDEX ...). Never
 * change a step once released; add one. */
CF_WARN_UNUSED enum cf_err risk_schema_migrate_steps(struct sqldb *db, const char *name,
                                                     const char *schema,
                                                     const char *const *later, size_t later_n);

/* Commits tx when err is CF_OK, else rolls it back; answers err or the commit's error. */
CF_WARN_UNUSED enum cf_err risk_tx_end(struct sqltx *tx, enum cf_err err);

/* The `row` (the first integer cell) of the one row sql answers for key (its $1), after err
 * (nothing runs unless err is CF_OK); CF_ERR_INTERNAL when it answers no row or several, since
 * key names a row this transaction just wrote. */
CF_WARN_UNUSED enum cf_err risk_row_of(struct sqltx *tx, enum cf_err err, const char *sql,
                                       const char *key, uint64_t *row_out);

/* Seals pt (n bytes) with vault's current key under aad into out (out_bytes); CF_ERR_CONFIG when
 * there is no current key. */
CF_WARN_UNUSED enum cf_err risk_seal(risk_vault_fn vault, void *vault_ctx, const char *aad,
                                     const void *pt, size_t n, uint8_t *out, size_t out_bytes,
                                     size_t *len_out);
/* Opens what risk_seal sealed (ct, n bytes; NULL fails) into out (out_bytes); CF_ERR_CORRUPT
 * when it does not open. */
CF_WARN_UNUSED enum cf_err risk_unseal(risk_vault_fn vault, void *vault_ctx, const char *aad,
                                       const uint8_t *ct, size_t n, uint8_t *out, size_t out_bytes,
                                       size_t *len_out);
/* A sealed text into out (out_bytes, NUL-terminated); out is untouched on failure. */
CF_WARN_UNUSED enum cf_err risk_unseal_text(risk_vault_fn vault, void *vault_ctx, const char *aad,
                                            const uint8_t *ct, size_t n, char *out,
                                            size_t out_bytes);

/* Name tables (a store's states, kinds, events): names[v] is value v's name, n <= 256 entries
 * ("" for a value without one). risk_name_of: v's name, "" for v >= n. risk_name_parse: the
 * value whose name text is exactly, searched from first (a table whose 0 means "none" passes
 * 1); CF_ERR_INVALID_FIELD for NULL or another text, *out untouched then. */
#define RISK_NAMES_N(names) (sizeof(names) / sizeof((names)[0]))
const char *risk_name_of(const char *const *names, size_t n, size_t v);
CF_WARN_UNUSED enum cf_err risk_name_parse(const char *const *names, size_t n, size_t first,
                                           const char *text, uint8_t *out);

/* src (NULL reads as "") into dst (dst_bytes), truncated and NUL-terminated. */
void risk_text_copy(char *dst, size_t dst_bytes, const char *src);

/* A fresh random id with prefix into out (out_bytes, which must hold it whole). */
void risk_id_new(const char *prefix, char *out, size_t out_bytes);

/* Whether text is a well-formed "usr_" or "mer_" id. */
bool risk_party_valid(const char *text);

/* Whether text is 1..bytes_max-1 bytes of printable ASCII without spaces (a staff id, a key, a
 * process's name); with empty_ok, "" too (never NULL). */
bool risk_token_valid(const char *text, size_t bytes_max, bool empty_ok);

/* risk_text_check's flags. */
#define RISK_TEXT_LINES 1u /* tab, LF and CR pass */
#define RISK_TEXT_EMPTY 2u /* "" and NULL pass */
#define RISK_TEXT_INVISIBLE                                                                        \
    4u /* zero widths, bidi controls and BOM count as control characters                           \
        */

enum risk_text_verdict {
    RISK_TEXT_OK = 0,
    RISK_TEXT_LENGTH,  /* empty, not below bytes_max bytes, or above chars_max characters */
    RISK_TEXT_UTF8,    /* not valid UTF-8 (overlong, a surrogate, above U+10FFFF, truncated) */
    RISK_TEXT_CONTROL, /* a C0 or C1 control character (and see the flags) */
};

/* Checks text: NUL-terminated below bytes_max bytes, UTF-8, at most chars_max characters, no
 * control characters (flags above). The first bad character decides between UTF8 and CONTROL;
 * *chars_out (may be NULL) gets the characters when OK. */
enum risk_text_verdict risk_text_check(const char *text, size_t bytes_max, size_t chars_max,
                                       unsigned flags, size_t *chars_out);

#endif
