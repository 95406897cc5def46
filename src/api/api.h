/*
 * api.h - the /v1 HTTP API: JSON in and out, over the ledger writer and the store's readers.
 *
 * One file per resource (accounts.c, transfers.c, system.c); routes.c holds the route table,
 * which is the single source of truth for paths, scopes, body limits and idempotency, and which
 * the OpenAPI document is checked against. json.c decodes strictly (duplicate keys, invalid
 * UTF-8, integers that overflow, unknown fields and nesting deeper than JSON_DEPTH_MAX are all
 * 400s); render.c encodes; problem.c answers RFC 9457 problem+json with the stable code from
 * the error registry.
 *
 * Idempotency: every POST that changes the ledger takes an Idempotency-Key header (required,
 * 1..128 printable ASCII characters; optional on the batch route, whose items carry their own
 * keys). The key and the response are stored by the writer in the same transaction as the
 * change; a key still running in this process answers 409 idempotency_key_in_flight.
 */
#ifndef COFFER_API_API_H
#define COFFER_API_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/hash.h"
#include "http/http.h"
#include "identity/identity.h"
#include "ledger/writer.h"
#include "store/store.h"

struct api_inflight;
struct api_pool;
struct payments;
struct gateway;
struct risk_freeze;
struct risk_kyc;
struct risk_cases;
struct api_aml;
struct risk_rules_store;
struct risk_decisions;
struct api_risk_monitor;
struct velocity;
struct api_risk_ages;
struct risk_lists;
struct api_screening;

/* Payment settings (from the configuration; see src/cli/config.h). */
#define API_CURRENCIES_MAX 16
struct api_pay_config {
    char currencies[API_CURRENCIES_MAX][MONEY_CODE_BYTES_MAX + 1]; /* on offer to customers */
    size_t currencies_n;
    char default_currency[MONEY_CODE_BYTES_MAX + 1];
    int64_t send_fee_bps; /* fee on person-to-person sends */
    int64_t send_fee_fixed_minor;
    bool refund_returns_fee; /* refunds give the merchant the fee's share back */
    int64_t quote_ttl_s;     /* how long a quote holds */
    int64_t qr_ttl_s;        /* default lifetime of a dynamic QR code */
    int64_t fx_spread_bps;
    int64_t topup_hold_s; /* how long a top-up waits for the gateway before it is voided */
};

struct api {
    struct store *store;
    struct writer *writer;
    struct identity *identity;
    struct http_server *server; /* set after the server starts, for /metrics */
    uint8_t operator_token_hash[HASH_BYTES];
    struct api_inflight *inflight;
    struct api_pool *pool;      /* worker threads for blocking identity work */
    struct payments *payments;  /* money movement's state (set by the caller after api_create) */
    struct gateway *gateway;    /* top-ups, withdrawals and payouts */
    uint8_t gateway_secret[64]; /* checks the gateway's signed callbacks */
    size_t gateway_secret_len;
    struct api_pay_config pay;
    struct risk_freeze *freeze;  /* account freezes (api/risk_freeze.h; set with payments) */
    bool freeze_blocks_incoming; /* a freeze's blocks_incoming when the request names none */
    struct risk_kyc *kyc;        /* KYC tiers and limits (api/risk_kyc.h; set with payments) */
    struct risk_cases *cases;    /* risk cases (risk/cases.h; opened with payments) */
    struct api_aml *aml;         /* the AML sweep (api/risk_cases.h; started with payments) */
    struct risk_rules_store *risk_rules;   /* monitoring rules (risk/rules_store.h; with payments) */
    struct risk_decisions *risk_decisions; /* the decision log (risk/decisions.h; with payments) */
    struct api_risk_monitor *monitor;      /* the active rules set (api/risk_rules.h) */
    bool risk_monitoring;                  /* config `monitoring`: score money movements */
    struct velocity *velocity;             /* monitoring's velocity counters (api/risk_monitor.h) */
    struct api_risk_ages *risk_ages;       /* customers' account creation times (risk_monitor.c) */
    bool kyc_enforce;                      /* config `kyc_enforce`: apply the KYC tier limits */
    struct risk_lists *risk_lists;     /* screening at rest (risk/lists.h; with payments) */
    struct api_screening *screening;   /* the lists in memory (api/risk_screening.h) */
};

void api_pay_config_defaults(struct api_pay_config *c);

/* Builds the API context; *out is freed with api_destroy. */
CF_WARN_UNUSED enum cf_err api_create(struct store *store, struct writer *writer,
                                      struct identity *identity,
                                      const uint8_t operator_token_hash[HASH_BYTES],
                                      struct api **out);
void api_destroy(struct api *api);

/* Who is calling (set by api_authorize; NULL on public routes). bootstrap is the operator
 * token, which may only create the first admin. */
struct api_principal {
    struct identity_principal user;
    bool bootstrap;
};
static inline const struct api_principal *api_principal(const struct http_request *req)
{
    return req->principal;
}
/* The HTTP_ROLE_* bit of a role. */
uint32_t api_role_bit(enum identity_role r);
/* The request's origin, for the audit log. */
void api_ctx(const struct http_request *req, struct identity_ctx *out);
/* The actor name of the caller for audit lines: the user id or "operator". */
const char *api_actor(const struct http_request *req);

/* Offloading (pool.c): identity work blocks (argon2id, database round trips), so it runs on a
 * small pool of worker threads, never on the HTTP event threads. A handler returns
 * api_offload(req, resp, run); run executes on a worker and fills its response; the route's
 * finish handler must be api_offload_finish. A full queue answers 503. */
typedef void (*api_job_fn)(struct http_request *req, struct http_response *resp);
enum http_action api_offload(struct http_request *req, struct http_response *resp, api_job_fn run);
enum http_action api_offload_finish(struct http_request *req, struct http_response *resp);
CF_WARN_UNUSED enum cf_err api_pool_create(unsigned threads, struct api_pool **out);
void api_pool_destroy(struct api_pool *p);

/* Replies with obj as JSON (and takes the reference). */
void api_reply_object(struct http_request *req, struct http_response *resp, int status,
                      json_t *obj);
/* A problem answer with an optional Retry-After (seconds; 0 for none). */
void api_problem_retry(struct http_request *req, struct http_response *resp, enum cf_err err,
                       const char *detail, int64_t retry_after_s);
/* A copy of a decoding error's detail in the request's arena (it may point into the JSON tree,
 * which is freed before the answer is written); NULL stays NULL. */
const char *api_detail_keep(struct http_request *req, const char *detail);
/* Reads the optional "verification": {"challenge_id","code"} member of a request body. */
CF_WARN_UNUSED enum cf_err api_json_verification(json_t *root, struct identity_verification *out);

/* The route table. */
extern const struct http_route api_routes[];
extern const size_t api_routes_n;

/* http.h callbacks. */
enum cf_err api_authorize(void *app, struct http_request *req);
void api_problem(struct http_request *req, struct http_response *resp, enum cf_err err,
                 const char *detail);

/* Fills resp with a JSON body (in the request arena). */
void api_json_reply(struct http_response *resp, int status, const struct buf *body);

/* The problem+json text for err (used for stored idempotent responses too). */
void api_problem_write(struct buf *out, enum cf_err err, const char *detail);

/* Strict decoding (json.c) ----------------------------------------------------------------------
 */

/* Parses the request body as a JSON object. On error, *detail_out says why (arena or static). */
CF_WARN_UNUSED enum cf_err api_json_object(struct http_request *req, json_t **out,
                                           const char **detail_out);
/* CF_ERR_UNKNOWN_FIELD when obj has a key not in allowed (NULL-terminated); *detail_out names it.
 */
CF_WARN_UNUSED enum cf_err api_json_fields(json_t *obj, const char *const *allowed,
                                           const char **detail_out);
/* Field readers: CF_OK when absent (out untouched) unless required. */
CF_WARN_UNUSED enum cf_err api_json_string(json_t *obj, const char *key, bool required,
                                           size_t bytes_max, const char **out, size_t *len_out);
CF_WARN_UNUSED enum cf_err api_json_bool(json_t *obj, const char *key, bool *out);
CF_WARN_UNUSED enum cf_err api_json_int(json_t *obj, const char *key, bool required, int64_t *out);
/* metadata: an object, stored as compact JSON with sorted keys, at most bytes_max. */
CF_WARN_UNUSED enum cf_err api_json_metadata(json_t *obj, struct arena *arena, const char **out,
                                             size_t *len_out);
/* Account and transfer ids. */
CF_WARN_UNUSED enum cf_err api_json_id(json_t *obj, const char *key, const char *prefix,
                                       uint64_t *out);
/* limit and cursor query parameters. */
CF_WARN_UNUSED enum cf_err api_page_params(struct http_request *req, size_t *limit_out,
                                           uint64_t *cursor_out, bool *has_cursor_out);

/* Rendering (render.c) ----------------------------------------------------------------------- */

void api_render_account(struct buf *b, const struct ledger_account *a, const char *owner,
                        const char *metadata);
void api_render_entry(struct buf *b, const struct ledger_entry *e);
void api_render_string(struct buf *b, const char *s, size_t len);

/* Renders one list item and returns its position (the cursor if it is the page's last). */
typedef uint64_t (*api_item_fn)(struct buf *b, const void *items, size_t i);
/* Answers {"data": [...], "next_cursor": ...} from n fetched items, of which the first limit
 * are shown; n > limit means there is a next page. */
void api_reply_page(struct http_request *req, struct http_response *resp, const void *items,
                    size_t n, size_t limit, api_item_fn item);

/* Idempotency (idempotency.c) ---------------------------------------------------------------- */

/* Validates the header and prepares cmd's key (namespaced) and request hash. */
CF_WARN_UNUSED enum cf_err api_idem_prepare(struct http_request *req, struct writer_cmd *cmd,
                                            bool required);
/* Marks cmd's key in flight; CF_ERR_IDEM_KEY_IN_FLIGHT when it already is. */
CF_WARN_UNUSED enum cf_err api_inflight_acquire(struct api *api, const struct writer_cmd *cmd);
void api_inflight_release(struct api *api, const struct writer_cmd *cmd);
CF_WARN_UNUSED enum cf_err api_inflight_create(struct api_inflight **out);
void api_inflight_destroy(struct api_inflight *s);

/* Submits cmd for req and suspends; answers with a problem when the writer refuses. Sets
 * cmd->done and cmd->user. */
enum http_action api_submit(struct http_request *req, struct http_response *resp,
                            struct writer_cmd *cmd);
/* The finish half: releases the key and answers with the stored/rendered body or a problem.
 * Returns true when it answered; false when the caller should render a fresh success. */
bool api_finish_common(struct http_request *req, struct http_response *resp,
                       struct writer_cmd *cmd);

/* Renders cmd's outcome into resp_status/resp_body (in cmd->arena). */
CF_WARN_UNUSED enum cf_err api_cmd_render(struct writer_cmd *cmd);
/* From a worker thread: submits cmd, waits until it is durable (or refused), renders it.
 * CF_OK means cmd->err / cmd->resp_* tell the outcome; an error means it never ran. */
CF_WARN_UNUSED enum cf_err api_submit_wait(struct api *api, struct writer_cmd *cmd,
                                           struct arena *arena);
/* Answers with cmd's rendered outcome. */
void api_cmd_reply(struct http_request *req, struct http_response *resp,
                   const struct writer_cmd *cmd);

/* writer_cmd.variant: how a transfer's response is shaped */
#define API_VARIANT_SINGLE 0 /* the transfer itself */
#define API_VARIANT_LEGS 1   /* {"group_id", "legs": [...]} */

/* Handlers ------------------------------------------------------------------------------------ */

enum http_action api_healthz(struct http_request *req, struct http_response *resp);
enum http_action api_metrics(struct http_request *req, struct http_response *resp);
enum http_action api_account_create(struct http_request *req, struct http_response *resp);
enum http_action api_account_get(struct http_request *req, struct http_response *resp);
enum http_action api_accounts_list(struct http_request *req, struct http_response *resp);
enum http_action api_account_freeze(struct http_request *req, struct http_response *resp);
enum http_action api_account_unfreeze(struct http_request *req, struct http_response *resp);
enum http_action api_account_transfers(struct http_request *req, struct http_response *resp);
enum http_action api_transfer_create(struct http_request *req, struct http_response *resp);
enum http_action api_transfer_get(struct http_request *req, struct http_response *resp);
enum http_action api_transfer_post(struct http_request *req, struct http_response *resp);
enum http_action api_transfer_void(struct http_request *req, struct http_response *resp);
enum http_action api_transfers_batch(struct http_request *req, struct http_response *resp);
enum http_action api_currencies_list(struct http_request *req, struct http_response *resp);
enum http_action api_auth_register(struct http_request *req, struct http_response *resp);
enum http_action api_auth_register_verify(struct http_request *req, struct http_response *resp);
enum http_action api_auth_sign_in(struct http_request *req, struct http_response *resp);
enum http_action api_auth_sign_in_mfa(struct http_request *req, struct http_response *resp);
enum http_action api_auth_sign_in_enroll(struct http_request *req, struct http_response *resp);
enum http_action api_auth_sign_out(struct http_request *req, struct http_response *resp);
enum http_action api_auth_reset(struct http_request *req, struct http_response *resp);
enum http_action api_auth_reset_confirm(struct http_request *req, struct http_response *resp);
enum http_action api_bootstrap(struct http_request *req, struct http_response *resp);
enum http_action api_me_get(struct http_request *req, struct http_response *resp);
enum http_action api_me_sessions(struct http_request *req, struct http_response *resp);
enum http_action api_me_session_revoke(struct http_request *req, struct http_response *resp);
enum http_action api_me_sessions_revoke_others(struct http_request *req,
                                               struct http_response *resp);
enum http_action api_me_challenge(struct http_request *req, struct http_response *resp);
enum http_action api_me_password(struct http_request *req, struct http_response *resp);
enum http_action api_me_login(struct http_request *req, struct http_response *resp);
enum http_action api_me_login_confirm(struct http_request *req, struct http_response *resp);
enum http_action api_me_totp_begin(struct http_request *req, struct http_response *resp);
enum http_action api_me_totp_confirm(struct http_request *req, struct http_response *resp);
enum http_action api_me_totp_disable(struct http_request *req, struct http_response *resp);
enum http_action api_me_export(struct http_request *req, struct http_response *resp);
enum http_action api_me_close(struct http_request *req, struct http_response *resp);
enum http_action api_me_accounts(struct http_request *req, struct http_response *resp);
enum http_action api_me_account_open(struct http_request *req, struct http_response *resp);
enum http_action api_me_account_get(struct http_request *req, struct http_response *resp);
enum http_action api_me_account_transfers(struct http_request *req, struct http_response *resp);
enum http_action api_me_transfer_create(struct http_request *req, struct http_response *resp);
enum http_action api_me_transfer_get(struct http_request *req, struct http_response *resp);
enum http_action api_admin_staff_create(struct http_request *req, struct http_response *resp);
enum http_action api_admin_user_get(struct http_request *req, struct http_response *resp);
enum http_action api_admin_role_set(struct http_request *req, struct http_response *resp);
enum http_action api_admin_outbox(struct http_request *req, struct http_response *resp);
enum http_action api_audit_list(struct http_request *req, struct http_response *resp);
enum http_action api_admin_merchant_create(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_get(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_users(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_user_add(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_user_remove(struct http_request *req, struct http_response *resp);
/* TOTP enrolment answer (secret, otpauth URI, QR code as SVG). */
void api_reply_enrolment(struct http_request *req, struct http_response *resp,
                         const struct identity_totp_enrolment *e);
/* finish handlers for suspended writes */
enum http_action api_write_finish(struct http_request *req, struct http_response *resp);

/* Decoding helpers shared with the fuzzer: a transfer request body into legs. */
CF_WARN_UNUSED enum cf_err api_decode_leg(json_t *obj, struct arena *arena, bool batch_item,
                                          struct ledger_leg *leg, const char **detail_out);

#endif
