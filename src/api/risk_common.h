/*
 * risk_common.h - route helpers the risk routes (risk_freeze.c, risk_kyc.c, risk_cases.c,
 * risk_rules.c, risk_screening.c) share: an empty body, paging parameters, the page answer, an
 * object or problem answer, and a time as JSON.
 */
#ifndef COFFER_API_RISK_COMMON_H
#define COFFER_API_RISK_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

/* A route that takes no body, or an empty object: CF_OK, else the problem with *detail (kept in
 * the request's arena). */
CF_WARN_UNUSED enum cf_err api_risk_empty_body(struct http_request *req, const char **detail);

/* The limit and cursor query parameters (see api_page_params): a limit above limit_max is
 * CF_ERR_INVALID_PAGE_SIZE with *detail = limit_detail, a cursor of 0 CF_ERR_INVALID_CURSOR. */
CF_WARN_UNUSED enum cf_err api_risk_page_params(struct http_request *req, size_t limit_max,
                                                const char *limit_detail, size_t *limit_out,
                                                uint64_t *before_out, const char **detail);

/* Answers {"data": data, "next_cursor": ...} (next_cursor names last_row when the page is full,
 * n == limit > 0; else null), or err's problem with detail when err is not CF_OK or the answer
 * cannot be built. Takes data. */
void api_risk_page_reply(struct http_request *req, struct http_response *resp, enum cf_err err,
                         const char *detail, json_t *data, size_t n, size_t limit,
                         uint64_t last_row);

/* Answers o with status; or err's problem with detail when err is not CF_OK, CF_ERR_NOMEM's when
 * o is NULL. Takes o. */
void api_risk_object_reply(struct http_request *req, struct http_response *resp, enum cf_err err,
                           const char *detail, int status, json_t *o);

/* A time as the risk routes show it: RFC 3339 text, or null for 0 or less ("not yet"). */
json_t *api_risk_time_json(int64_t at_us);

#endif
