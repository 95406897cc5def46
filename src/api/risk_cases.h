/*
 * risk_cases.h - the AML sweep that turns completed operations into alerts and cases
 * (risk/aml.h finds the patterns, risk/cases.h keeps the cases), and the case routes staff use.
 *
 *   GET  /v1/risk/cases                   ?status&kind&subject&assignee&scenario&from&to
 *                                         &cursor&limit: cases, newest first
 *   GET  /v1/risk/cases/{id}              the case, its notes (opened), evidence (with each
 *                                         operation's facts) and events
 *   POST /v1/risk/cases/{id}/assign       {assignee: usr_... | null}, Idempotency-Key
 *   POST /v1/risk/cases/{id}/notes        {text}, Idempotency-Key                    -> 201
 *   POST /v1/risk/cases/{id}/evidence     {operation_id}, Idempotency-Key            -> 201
 *   POST /v1/risk/cases/{id}/decision     {decision: clear|freeze|report, reason}, Idempotency-Key
 *   GET  /v1/risk/cases/{id}/report       ?format=json|csv: the suspicious-activity report
 *   POST /v1/risk/aml/sweep               no body or {}: runs the sweep now           -> 200
 *
 * Who: risk analysts and admins write (and sweep); support and auditors read. Customers and
 * merchants never see a case: 403. An unknown or malformed case id answers 404.
 *
 * The sweep (api_risk_aml_sweep):
 *   1. lists the operations completed since the watermark "aml_sweep" (risk_cases_mark_get;
 *      payments_ops_completed_since, in completion order), in pages, at most
 *      API_AML_SWEEP_OPS_MAX per batch and API_AML_SWEEP_BATCHES_MAX batches per run;
 *   2. collects their parties (payer and payee that are customers "usr_" or merchants "mer_"),
 *      each once per batch, at most API_AML_SWEEP_SUBJECTS_MAX (the batch ends early then);
 *   3. for each subject loads its history: its completed operations created from (its oldest
 *      new operation - the longest scenario window) on, newest first, at most AML_EVENTS_MAX
 *      events, plus the newest completed operation before that (the last activity before a
 *      dormant gap); each operation becomes an aml_event from the subject's side: paid by the
 *      subject = out, of amount_minor in currency; paid to the subject = in, of credit_minor in
 *      credit_currency when set (a payment or send across currencies), else amount_minor; a
 *      conversion (the subject on both sides) is both; an event's time is the operation's
 *      creation; holds are no movement and are left out;
 *   4. runs aml_scan with the configured aml_config and files every alert with
 *      risk_cases_alert (kind RISK_CASE_AML, dedup key = the alert's key, evidence = its
 *      operation ids): the same pattern found again adds its new operations to the open case,
 *      never a second case;
 *   5. moves the watermark to the last operation handled, but never later than the run's start
 *      less API_AML_SWEEP_LAG_US: an operation whose completion committed a little after its
 *      timestamp (a transaction waiting for a connection) is listed again by the next run
 *      rather than missed; a subject seen twice is scanned twice, which changes nothing.
 *   A subject whose scan fails with bad data is logged (code and subject, nothing else) and
 *   skipped; a storage error ends the run without moving the watermark. One run at a time (a
 *   mutex): the timer and POST /v1/risk/aml/sweep queue behind each other.
 *
 * Decisions: clear and report close the case; freeze closes it and freezes the subject through
 * api_risk_party_freeze (risk_freeze.h: every account of the subject frozen, so it can receive
 * but not send), reason = the decision's reason, blocks_incoming = the server's default, key
 * "case:<case id>:freeze" so that repeating the request (same Idempotency-Key: the decision
 * replays) finishes a freeze a crash interrupted. A subject frozen already is fine. report makes
 * the report final ("status": "final"); before it the report is a "draft".
 *
 * Audit lines (never a note's text, a reason or personal data): case.assign, case.note,
 * case.evidence, case.decide (target the case id, actor the staff member, detail the event's
 * facts), case.report_export (target the subject, detail the case and format: the report opens
 * the subject's identity, a personal-data read, written before the report is answered);
 * reading a case (notes opened) queues staff.risk.case_view.
 */
#ifndef COFFER_API_RISK_CASES_H
#define COFFER_API_RISK_CASES_H

#include "api/api.h"
#include "risk/cases.h"

#define API_AML_SWEEP_OPS_MAX 2000      /* operations one batch lists (10 pages) */
#define API_AML_SWEEP_BATCHES_MAX 50    /* batches one run takes before yielding to the next */
#define API_AML_SWEEP_SUBJECTS_MAX 1000 /* subjects one batch scans */
#define API_AML_ALERTS_MAX 64           /* alerts one subject's scan keeps (the newest) */
#define API_AML_PRIOR_PAGES_MAX 5       /* pages searched for the activity before a gap */
/* How long a completion may commit after its timestamp: SQL_BEGIN_WAIT_MS and a margin. */
#define API_AML_SWEEP_LAG_US (15LL * 1000000)
#define API_CASE_EVIDENCE_SHOWN RISK_CASE_EVIDENCE_MAX /* evidence GET .../{id} shows */
#define API_CASE_EVENTS_SHOWN 200                      /* events GET .../{id} shows, oldest first */
#define API_AML_MARK "aml_sweep"                       /* the sweep's watermark */

struct api_aml;

/* What one run did. */
struct api_aml_stats {
    size_t operations; /* completed operations read */
    size_t subjects;   /* subjects scanned */
    size_t alerts;     /* alerts filed */
    size_t opened;     /* new cases */
    size_t skipped;    /* subjects whose scan failed on bad data */
};

/* Checks cfg (aml_config_check: CF_ERR_CONFIG with a line on stderr), keeps a copy on api
 * (api->aml) and, when cfg->period_s > 0, starts the timer thread that sweeps every period_s
 * (the first run one period after start). api->payments and api->cases must be open and stay
 * so until api_risk_aml_stop. Called once, by the thread that runs serve. */
CF_WARN_UNUSED enum cf_err api_risk_aml_start(struct api *api,
                                              const struct risk_cases_sweep_config *cfg);
/* Stops and joins the timer (a run in progress finishes its subject first) and frees api->aml;
 * NULL api->aml ok. */
void api_risk_aml_stop(struct api *api);

/* One sweep at now_us (above); *cases_out gets the cases it opened (its buffers are its own,
 * on the heap). CF_ERR_CONFIG when the sweep was never started. Runs on a worker thread or the
 * timer's. */
CF_WARN_UNUSED enum cf_err api_risk_aml_sweep(struct api *api, int64_t now_us, size_t *cases_out);

/* Handlers. */
enum http_action api_risk_cases_list(struct http_request *req, struct http_response *resp);
enum http_action api_risk_case_get(struct http_request *req, struct http_response *resp);
enum http_action api_risk_case_assign(struct http_request *req, struct http_response *resp);
enum http_action api_risk_case_note(struct http_request *req, struct http_response *resp);
enum http_action api_risk_case_evidence(struct http_request *req, struct http_response *resp);
enum http_action api_risk_case_decide(struct http_request *req, struct http_response *resp);
enum http_action api_risk_case_report(struct http_request *req, struct http_response *resp);
enum http_action api_risk_aml_sweep_run(struct http_request *req, struct http_response *resp);

#endif
