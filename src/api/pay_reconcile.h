/*
 * pay_reconcile.h - the handler of pay_reconcile.c, for the route table, and its bounds.
 *
 * POST /v1/admin/reconcile {csv, from?, to?} compares a gateway's settlement file with the
 * gateway operations of a window (payments/reconcile.h says how) and answers the counts and the
 * mismatches. It changes nothing (an audit line aside), so it takes no Idempotency-Key; admins
 * and auditors may call it.
 */
#ifndef COFFER_API_PAY_RECONCILE_H
#define COFFER_API_PAY_RECONCILE_H

#include "api/pay.h"

/* The route's body: a settlement file inside a JSON string (its quotes and line breaks
 * escaped), ~90 000 rows of ~70 bytes. The server keeps a body (and a NUL) in a buffer it
 * doubles, inside the request's arena, which http/server.c sizes for HTTP_BATCH_BODY_BYTES_MAX
 * (33 MiB): a body up to 6 MiB takes at most an 8 MiB buffer and leaves room for the answer,
 * where one of 8 MiB would take 16 MiB and leave none. Bigger files (up to
 * RECONCILE_FILE_BYTES_MAX) go through `coffer reconcile`. */
#define API_RECONCILE_BODY_BYTES_MAX (6 * 1024 * 1024)
/* Mismatches listed in one answer (the counts cover them all): keeps the answer under ~0.5 MiB,
 * which the request's arena holds even after the largest body. `coffer reconcile` lists all. */
#define API_RECONCILE_LISTED_MAX 1000

enum http_action api_admin_reconcile(struct http_request *req, struct http_response *resp);

#endif
