/*
 * risk_rules.h - real-time monitoring's staff side: the active rules set every money movement
 * is scored against, the routes that edit the rules (risk/rules_store.h), the decision log's
 * routes (risk/decisions.h), and the dry run.
 *
 * (The HTTP layer serves GET and POST only, so an update is a POST to the rule and a delete a
 * POST to its /delete, like the other staff actions.)
 *
 *   GET    /v1/risk/features             the feature registry (name, type, doc)
 *   GET    /v1/risk/rules                the current set: every live rule and the set version
 *   POST   /v1/risk/rules                {id, condition, action, reason, description?, enabled?,
 *                                        base_version?} Idempotency-Key -> 201 the new version
 *   POST   /v1/risk/rules/dry-run        {condition, action, reason?, window_s?, limit?}
 *                                        -> 200 the report (changes nothing: no key taken)
 *   GET    /v1/risk/rules/{id}           the rule (when live) and its history, newest first
 *   POST   /v1/risk/rules/{id}           {condition, action, reason, description?, enabled?,
 *                                        base_version?} Idempotency-Key -> 200 the new version
 *   POST   /v1/risk/rules/{id}/delete    no body, {} or {base_version}; Idempotency-Key -> 200
 *                                        the delete's version
 *   GET    /v1/risk/decisions            ?action&review&party&from&to&cursor&limit
 *   GET    /v1/risk/decisions/{op_id}    the staff detail: features, matches, rule texts
 *
 * Who: risk and admin write rules and dry-run; support and auditors read rules, features and
 * decisions (risk and admin too). Customers and merchants get 403.
 *
 * The active set. api->monitor holds one immutable rules_set (rules.h) built from the store's
 * current set. It is never NULL once api_risk_rules_start ran: an empty set (set version 0)
 * allows everything. A reader takes a reference (api_risk_rules_acquire) and gives it back
 * (api_risk_rules_release); a rule change builds a new set from the store and swaps it in. The
 * scheme is a mutex-protected pointer with a reference count per set: acquire and release hold
 * the mutex for a pointer read and an increment (no allocation, no I/O); a writer compiles the
 * new set outside the mutex and holds it only to swap the pointer; the old set is destroyed by
 * whoever drops its last reference (the swap, or the last reader's release). So readers never
 * wait on a compile or a database read, and a set in use is never freed. Rebuilds are serial
 * (their own mutex), and one that read a set version not above the active one is dropped, so
 * the active set never goes back. Other servers on the same database change rules too: a
 * background thread reads the stored set version every API_RISK_RULES_POLL_MS and rebuilds
 * when it moved, so every process runs a change within that time.
 *
 * Rules of the routes:
 *   - Writes take an Idempotency-Key (namespaced by the caller: "<user id>:<key>"); the same
 *     key again answers the version it made; another request under it 422
 *     idempotency_key_reused. A key of another route or rule is another request (the request
 *     hash covers the method, the path and the body).
 *   - A rule that does not compile answers 400 invalid_field with the detail
 *     "<field>: column <n>: <reason>" (column only for the condition's tokens), e.g.
 *     "condition: column 1: unknown feature". Creating a live id answers 409 conflict ("id:
 *     exists"), as does a 201st live rule; updating or deleting an id that is not live
 *     answers 404.
 *   - base_version (optional, every write): the rule's version the analyst edited from (the
 *     "version" of GET /v1/risk/rules/{id}'s rule; for a create, the id's latest version, 0 when
 *     never created). When the rule has moved on since (another analyst changed it), the change
 *     answers 409 conflict, detail "base_version: the rule changed since that version; read it
 *     again", and changes nothing; the check is the store's, in the change's transaction
 *     (rules_store.h). The rule's version, not the set version: another rule's change does not
 *     make an edit stale. Without it, the last change wins as before. A replay of the same
 *     Idempotency-Key answers the version it made.
 *   - An update replaces the rule: a description left out is none; enabled left out keeps the
 *     rule's flag (editing a disabled rule does not enable it). It records an enable or a
 *     disable when only the enabled flag differs from the latest version (so the history says
 *     what happened), else an update (also when nothing differs: the caller asked for a
 *     version). A create without enabled is enabled.
 *   - Every change writes one audit line (risk.rule_create, risk.rule_update, risk.rule_enable,
 *     risk.rule_disable, risk.rule_delete): target the rule id, detail the version, the set
 *     version, action, reason and condition (rules are not personal data). A dry run writes
 *     risk.rule_dry_run (the condition, window and counts).
 *   - After a change is stored the active set is rebuilt before answering, so a GET after the
 *     answer shows it and the next payment is scored by it (in this process). A rebuild that
 *     fails (out of memory) leaves the previous set active and is retried by the next change or
 *     api_risk_rules_refresh; the change itself stands.
 *   - Dry run: window_s 1..API_RISK_DRY_WINDOW_S_MAX (default API_RISK_DRY_WINDOW_S_DEFAULT),
 *     limit 1..RISK_DECISIONS_RECENT_MAX (default API_RISK_DRY_LIMIT_DEFAULT) recorded decisions,
 *     newest first; answers {examined, matched, by_action: {allow, challenge, review, block},
 *     samples: [{op_id, created_at, amount_minor, currency, kind}] (at most 20), window_s,
 *     since}. One dry run at a time per process (others wait); it runs on a worker.
 *   - Decisions: the list shows no features (row, op id, payer, kind, amount, currency, action,
 *     set version, matches, review state, created_at); the detail adds the features, the
 *     review (reviewer, reason, decided_at) and each matching rule's current description and
 *     condition when the rule is still live (staff detail; the customer never sees it).
 *     Reading a decision's detail writes staff.risk.decision_view (it opens the review reason).
 */
#ifndef COFFER_API_RISK_RULES_H
#define COFFER_API_RISK_RULES_H

#include "api/api.h"
#include "risk/decisions.h"
#include "risk/rules.h"
#include "risk/rules_store.h"

#define API_RISK_DRY_WINDOW_S_DEFAULT (7 * 86400) /* a week of history */
#define API_RISK_DRY_WINDOW_S_MAX (90 * 86400)    /* a quarter: older decisions say little */
#define API_RISK_DRY_LIMIT_DEFAULT 10000          /* decisions a dry run reads by default */
#define API_RISK_DECISIONS_PAGE_DEFAULT 50        /* rows GET /v1/risk/decisions answers */
#define API_RISK_RULE_HISTORY_SHOWN 50            /* versions GET /v1/risk/rules/{id} shows */
/* How often each process looks for rule changes made elsewhere: a change reaches every server
 * within this; one primary-key read each time. */
#define API_RISK_RULES_POLL_MS 2000

/* The active set holder (api->monitor); opaque. */
struct api_risk_monitor;

/* Loads the stored set (api->risk_rules) and makes it active; with no store, or before the
 * first change, the active set is empty (version 0). CF_ERR_CORRUPT when a stored rule no
 * longer compiles (the server refuses to start rather than score without it); CF_ERR_NOMEM;
 * the store's errors. Call once, before the server takes requests. */
CF_WARN_UNUSED enum cf_err api_risk_rules_start(struct api *api);
/* Frees the holder and the active set; every acquired set must have been released. NULL api
 * and a holder never started are fine. */
void api_risk_rules_stop(struct api *api);

/* The active rules set: never NULL once api_risk_rules_start ran (an empty set allows
 * everything). The caller holds a reference until api_risk_rules_release(api, set), and may
 * evaluate it meanwhile from any thread; a change swaps in a new set without disturbing it.
 * Any thread; never blocks on I/O. */
const struct rules_set *api_risk_rules_acquire(struct api *api);
void api_risk_rules_release(struct api *api, const struct rules_set *set);

/* Rebuilds the active set from the store now (after a change made outside these routes).
 * CF_OK also when the store's set is not newer than the active one. */
CF_WARN_UNUSED enum cf_err api_risk_rules_refresh(struct api *api);

/* Handlers. */
enum http_action api_risk_features_list(struct http_request *req, struct http_response *resp);
enum http_action api_risk_rules_list(struct http_request *req, struct http_response *resp);
enum http_action api_risk_rule_get(struct http_request *req, struct http_response *resp);
enum http_action api_risk_rule_create(struct http_request *req, struct http_response *resp);
enum http_action api_risk_rule_update(struct http_request *req, struct http_response *resp);
enum http_action api_risk_rule_delete(struct http_request *req, struct http_response *resp);
enum http_action api_risk_rules_dry_run(struct http_request *req, struct http_response *resp);
enum http_action api_risk_decisions_list(struct http_request *req, struct http_response *resp);
enum http_action api_risk_decision_get(struct http_request *req, struct http_response *resp);

#endif
