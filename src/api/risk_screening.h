/*
 * risk_screening.h - sanctions and watchlist screening: the lists in memory, screening a party
 * (at registration, KYC, a first payment to them, merchant onboarding, and again whenever a list
 * changes), the cases and payout blocks a hit makes, and the staff routes. risk/watchlist.h
 * parses lists and matches names; risk/lists.h keeps the lists' bytes, the screenings and the
 * blocks.
 *
 *   POST /v1/risk/lists                       {name, kind: sdn|simple, content, alt_content?},
 *                                             Idempotency-Key -> 201 the load; the body may be
 *                                             API_SCREENING_LIST_BODY_BYTES_MAX (this route only)
 *   GET  /v1/risk/lists                       the lists loaded: name, kind, entries, version...
 *   POST /v1/risk/screening/run               no body or {}: re-screen every party now -> 202
 *   GET  /v1/risk/screening/status            the re-screening's progress, the lists in memory
 *   GET  /v1/risk/parties/{id}/screening      the last screening, its hits, the block, history
 *   POST /v1/risk/parties/{id}/screening/clear {reason}, Idempotency-Key: lifts the block -> 200
 *   POST /v1/risk/screen                      {name, date_of_birth?, country?}: an analyst's
 *                                             ad-hoc check against the lists; stores nothing
 *
 * Who: risk and admin load lists, run, clear and screen ad hoc; support and auditors read (and
 * risk and admin). Customers and merchants get 403. {id} is a customer ("usr_...", role
 * customer) or a merchant ("mer_..."); anything else answers 404.
 *
 * The lists in memory. api->screening holds one immutable set of parsed lists (one watchlist
 * per stored name) with the load sequence it was built from (risk_lists_seq). It is never NULL
 * once api_risk_screening_start ran: with no list loaded the set is empty and every screening
 * is clear. A screening takes a reference to the set and gives it back; a load builds a new set
 * (the list just parsed, the others parsed again from their stored bytes) and swaps it in under
 * a mutex, as the rules set is (api/risk_rules.h); the old set is freed by whoever drops its
 * last reference. Rebuilds are serial and never install an older sequence. Other servers on the
 * same database load lists too: the re-screening thread reads the stored sequence every
 * API_SCREENING_POLL_MS and rebuilds when it moved. At start the stored lists are parsed again;
 * a stored list that no longer parses (or whose bytes no longer give its version) stops the
 * server (CF_ERR_CORRUPT) rather than screen without it.
 *
 * Screening a party (api_risk_screen_party): every name Coffer holds for the party is screened
 * against every list at the configured threshold (config `screening_threshold`, default
 * SCREEN_THRESHOLD_DEFAULT): the name the caller passes (with its date of birth and country,
 * when given), a customer's registered name and the legal name of their KYC details (latest
 * decided and current draft, with the date of birth and the nationality, else the country of
 * residence); a merchant's legal and display names and its payment profile's display name (with
 * its country). An entry hit by several names counts once, at its best score. A name the matcher
 * refuses (screen.h: too long, too many or too long words, control characters) cannot be
 * screened: it counts like a hit for review ("unscreenable"), never as clear. Closed customers
 * and parties identity does not know are not screened (CF_ERR_NOT_FOUND). The screening is
 * recorded (risk_lists_screening_put: the party's id, never its names); a hit or an unscreenable
 * name files an alert (kind RISK_CASE_SANCTIONS, dedup key "sanctions:<party>", scenario
 * "sanctions_hit" or "sanctions_unscreenable", evidence the hits' references, detail the
 * trigger, counts and best reference): one open case per party collects them, a case decided
 * before is not reopened by the same entries, a new entry opens a new one. The block (lists.h)
 * is set before the alert is filed and names its case once filed.
 *
 * Blocking: api_risk_screening_check refuses money leaving a blocked party (withdrawals, merchant
 * payouts) with CF_ERR_RISK_BLOCKED (403 risk_blocked, whose title asks the customer to contact
 * support and says nothing of lists: telling a listed person they are listed is tipping off).
 * The block stays until staff clear it (the route above) or the sanctions case whose hits set
 * it is decided "clear" (api_risk_screening_case_cleared). A cleared hit never blocks the party
 * again; a new entry does.
 *
 * Re-screening: after a load that changed a list (and on POST /v1/risk/screening/run) one
 * background thread screens every party again, trigger "rescreen": every subject ever screened
 * (the register risk/lists.h keeps: every customer registered, every merchant onboarded and
 * every payee since screening began), then the customers of the KYC queue (pending, approved,
 * rejected), then every open customer identity holds (identity_customers_page: also those who
 * registered before screening existed and never gave KYC details), the last two skipping whoever
 * this run screened already (their screening's time is at or after the run's start), so each
 * party is screened once per run. Merchants onboarded before screening existed are still only
 * screened when their profile is next set (see docs). One run at a
 * time; a request during a run restarts it (the lists changed again); progress is in GET
 * /v1/risk/screening/status; api_risk_screening_stop stops it between two parties. A completed
 * run stores the sequence it screened against (the cases store's watermark "screening_rescan"),
 * so a server that stopped or crashed before finishing starts the run again when it starts.
 *
 * Audit lines (never a name, a date of birth or a reason): risk.list_load (target the list,
 * detail load id, kind, version, entries), risk.screening_run, risk.screening_block (actor
 * "sanctions", target the party, detail the block event, case and trigger), risk.screening_clear
 * (target the party, detail the clear event, the block and the case when a case cleared it),
 * risk.screen_adhoc (detail the hit count), staff.risk.screening_view (reading a party's
 * screening opens clear reasons).
 *
 * Threads: every function here runs on the API's workers or the re-screening thread; none on an
 * HTTP event thread (they read the database).
 */
#ifndef COFFER_API_RISK_SCREENING_H
#define COFFER_API_RISK_SCREENING_H

#include "api/api.h"
#include "risk/lists.h"

/* The lists route's body: the published sdn.csv (about 3 MiB) and alt.csv (about 1 MiB) with
 * JSON escaping (their quotes double in size) fit. The server grows its body buffer by doubling
 * inside the request's arena (sized for HTTP_BATCH_BODY_BYTES_MAX, 33 MiB): a 7 MiB body takes
 * an 8 MiB buffer and 16 MiB in all, and leaves room for the rest of the request. */
#define API_SCREENING_LIST_BODY_BYTES_MAX (7 * 1024 * 1024)
#define API_SCREENING_NAMES_MAX 6     /* names one party is screened by (see above) */
#define API_SCREENING_POLL_MS 5000    /* how often lists loaded elsewhere are looked for */
#define API_SCREENING_PAGE 100        /* subjects one re-screening page reads */
#define API_SCREENING_EVENTS_SHOWN 50 /* block and clear events a party's view shows */
#define API_SCREENING_ARENA_BYTES (4 * 1024 * 1024) /* the re-screening's scratch per party */
#define API_SCREENING_MARK "screening_rescan"       /* the re-screening's watermark */

struct api_screening;

/* Builds the set from the stored lists (api->risk_lists; none: an empty set), keeps threshold
 * (RISK_LISTS_THRESHOLD_MIN..SCREEN_SCORE_MAX, else a caller bug), starts the re-screening
 * thread and, when a run did not finish since the last change (the watermark), queues one.
 * CF_ERR_CORRUPT when a stored list no longer parses; CF_ERR_NOMEM; the store's errors. Once,
 * before the server takes requests; api->identity, kyc, cases and payments stay open until
 * api_risk_screening_stop. */
CF_WARN_UNUSED enum cf_err api_risk_screening_start(struct api *api, int threshold);
/* Stops the thread (a run stops between two parties) and frees the set; every reference must
 * have been given back. NULL api and a holder never started are fine. */
void api_risk_screening_stop(struct api *api);

/*
 * Screens party ("usr_..."/"mer_...") as described above, trigger one of "registration", "kyc",
 * "payee", "merchant_onboarding", "rescreen", "manual" (another is a caller bug). name (NULL:
 * only the names Coffer holds), dob ("YYYY", "YYYY-MM", "YYYY-MM-DD" or NULL; another form is
 * ignored) and country (NULL or a code) are what the caller knows now, screened besides the
 * held names. Records the result, files the alert and sets the block on a hit; *hit_out (may be
 * NULL) says whether the outcome was not clear. arena is scratch (a request's). CF_OK also
 * without a store (nothing screened, not a hit); CF_ERR_NOT_FOUND for a party with no name to
 * screen (closed, unknown, staff); storage errors. Errors are logged here (code and party id):
 * a hook may ignore them (cf_best_effort), the next screening or re-screening catches up.
 */
CF_WARN_UNUSED enum cf_err api_risk_screen_party(struct api *api, struct arena *arena,
                                                 const char *party, const char *name,
                                                 const char *dob, const char *country,
                                                 const char *trigger, bool *hit_out);

/* The payout check: CF_ERR_RISK_BLOCKED when party has a screening block; CF_OK otherwise
 * (also for NULL, "" and without a store); a storage error when the block cannot be read (refuse
 * then). One primary-key read. */
CF_WARN_UNUSED enum cf_err api_risk_screening_check(struct api *api, const char *party);

/* After a case decision was recorded: when case_id is a sanctions case decided "clear", lifts
 * its subject's block (if the block names that case or none), by `by`, the case's reason as the
 * clear's, idempotently (key "case:<case id>:screening_clear"), and writes the audit line. CF_OK
 * when there is nothing to lift (another kind or decision, not blocked, a block of another
 * case); storage errors (repeat the decision request: it replays, and this runs again). */
CF_WARN_UNUSED enum cf_err api_risk_screening_case_cleared(struct api *api,
                                                           const struct identity_ctx *ctx,
                                                           const char *case_id, const char *by);

/* Queues a re-screening of every party (why: "load", "manual", "resume"); a run in progress
 * restarts. */
void api_risk_screening_rescreen(struct api *api, const char *why);

/* Handlers. */
enum http_action api_risk_lists_load(struct http_request *req, struct http_response *resp);
enum http_action api_risk_lists_list(struct http_request *req, struct http_response *resp);
enum http_action api_risk_screening_run(struct http_request *req, struct http_response *resp);
enum http_action api_risk_screening_status(struct http_request *req, struct http_response *resp);
enum http_action api_risk_party_screening(struct http_request *req, struct http_response *resp);
enum http_action api_risk_party_screening_clear(struct http_request *req,
                                                struct http_response *resp);
enum http_action api_risk_screen_adhoc(struct http_request *req, struct http_response *resp);

#endif
