/*
 * error.h - Coffer's error codes: one registry (errors.def), one enum, one HTTP status each.
 *
 * Every fallible function returns enum cf_err (CF_OK is 0) and leaves its outputs untouched on
 * failure. The API layer turns a code into an RFC 9457 problem+json answer with the stable code
 * string, so what a client sees is decided here, once.
 */
#ifndef COFFER_CORE_ERROR_H
#define COFFER_CORE_ERROR_H

enum cf_err {
#define CF_ERROR(e, status, code, title) CF_ERR_##e,
#include "core/errors.def"
#undef CF_ERROR
    CF_ERR_COUNT_
};

#define CF_OK CF_ERR_OK

/* The HTTP status for an error code. */
int cf_err_http_status(enum cf_err err);

/* The stable machine-readable code ("insufficient_funds"). Static storage; never NULL. */
const char *cf_err_code(enum cf_err err);

/* The human title. Static storage; never NULL. */
const char *cf_err_title(enum cf_err err);

/* Looks a code string up; returns CF_ERR_COUNT_ when unknown. */
enum cf_err cf_err_from_code(const char *code);

/* Marks a call whose failure the caller deliberately does not act on (it was logged, and the
 * answer must not depend on it: a notice that could not be sent, the audit line of a request
 * that is refused anyway). */
static inline void cf_best_effort(enum cf_err err) { (void)err; }

#endif
