/*
 * risk_kyc.h - know your customer over HTTP (risk/kyc.h holds the tiers, submissions and
 * limits): the customer's routes, the staff's review routes, and the check the payment path
 * makes.
 *
 * Customer (role customer, their own data only; there is no id to name another's):
 *   GET  /v1/me/kyc            tier, state, the customer-facing reason, the current submission
 *                              (details with the ID number masked, documents listed), the
 *                              limits that apply now per currency on offer, the features open
 *   POST /v1/me/kyc/details    {legal_name, id_type, id_number, date_of_birth, country,
 *                              nationality?} -> 200 as GET (tier 1 once the phone is verified)
 *   POST /v1/me/kyc/documents  {kind, content_type, content (base64)} -> 201 the document;
 *                              body up to API_KYC_DOCUMENT_BODY_BYTES_MAX (this route only)
 *   POST /v1/me/kyc/submit     {} or no body -> 200 as GET (state pending)
 * Staff (risk and admin decide; support reads; auditors list the queue, which holds no
 * personal data):
 *   GET  /v1/risk/kyc                           ?state=pending|approved|rejected&cursor&limit
 *   GET  /v1/risk/kyc/{user_id}                 details opened, documents listed, history
 *   GET  /v1/risk/kyc/{user_id}/documents/{doc_id}  the document's bytes and content type
 *   POST /v1/risk/kyc/{user_id}/decision        {decision: approve|reject, reason,
 *                                               customer_reason?, submission_id?},
 *                                               Idempotency-Key -> 200
 *   POST /v1/risk/kyc/{user_id}/tier            {tier: 0|1, reason, customer_reason?},
 *                                               Idempotency-Key -> 200: staff lower the tier
 *                                               (documents found forged or expired); the
 *                                               automatic raise to 1 waits for an approval
 *
 * Rules:
 *   - "Phone verified" is identity's notion of a verified login that is a phone number: a
 *     login is verified by a code at registration and at every login change, so a customer
 *     whose login is an E.164 number ("+...") has a verified phone; one whose login is an email
 *     has none, and stays at tier 0 until their login becomes a phone (GET /v1/me/kyc then
 *     raises them: risk_kyc_tier_refresh).
 *   - {user_id} on the staff routes must be a customer: anything else (staff, merchants,
 *     unknown or malformed ids) answers 404. A document of another customer answers 404 as an
 *     unknown one.
 *   - Decisions: the same Idempotency-Key answers the recorded decision again (200) with the
 *     tier now; another request under it 422 idempotency_key_reused; nothing pending, or a
 *     submission_id that is not the pending one, 409 conflict. UIs should send the
 *     submission_id they reviewed, so a decision never lands on a submission made after.
 *   - Audit lines: kyc.submit (the customer, target themself, detail the submission id),
 *     kyc.approve / kyc.reject (the staff member, target the customer, detail the event and
 *     submission ids), kyc.details_read and kyc.document_read (the staff member, target the
 *     customer, detail the submission or document id). Reads of personal data are audited
 *     before the data is answered, and refused (503) when the line cannot be written. Never a
 *     name, number, date, reason or document in a log or audit line.
 *   - After a decision (not its replay) the customer gets a notice through identity's notifier
 *     (SMS to a phone login, email otherwise) that says the outcome only, never the reason:
 *     they read it in GET /v1/me/kyc. A failed notice is logged and changes nothing.
 *   - Staff reasons are shown on the staff routes only; the customer sees customer_reason, or
 *     a fixed sentence for a rejection without one.
 */
#ifndef COFFER_API_RISK_KYC_H
#define COFFER_API_RISK_KYC_H

#include "api/api.h"
#include "risk/kyc.h"

/* The documents route's body: a document of RISK_KYC_DOC_BYTES_MAX is 5 592 408 bytes of
 * base64, inside a small JSON object. The server doubles its body buffer inside the request's
 * arena (sized for HTTP_BATCH_BODY_BYTES_MAX, 33 MiB): a 6 MiB body takes an 8 MiB buffer and
 * leaves room for everything else, as API_RECONCILE_BODY_BYTES_MAX does. */
#define API_KYC_DOCUMENT_BODY_BYTES_MAX (6 * 1024 * 1024)
#define API_KYC_HISTORY_SHOWN 50 /* events GET /v1/risk/kyc/{user_id} shows, newest first */
#define API_KYC_LIST_DEFAULT 50  /* queue rows per page when limit is not given */

/* The payment path's check, before it records anything: whether user_id's tier opens feature
 * ("topup", "receive", "payment", "send", "request", "conversion", "withdrawal"; another name is
 * a bug: asserted) and, for amount_minor > 0, whether it is within the tier's max_single in
 * currency. CF_OK, or CF_ERR_FORBIDDEN for a refusal (api_kyc_refusal_detail says which, for
 * the problem's detail); CF_ERR_CONFIG without a KYC store; a storage error when the tier
 * cannot be read (refuse then). *tier_out and *limit_out (the tier's limits in currency: the
 * daily, monthly and balance limits the caller enforces atomically) are set on CF_OK and on
 * CF_ERR_FORBIDDEN alike. Fast: the tier comes from risk_kyc_tier_get's cache. */
CF_WARN_UNUSED enum cf_err api_kyc_check(struct api *api, const char *user_id, const char *feature,
                                         int64_t amount_minor, const char *currency, int *tier_out,
                                         struct risk_kyc_limit *limit_out);
/* The customer's country of residence for monitoring (the country_mismatch feature): the one
 * their details as last submitted for review name, or their draft's before they ever submitted;
 * "" when they gave none. Opens the sealed details (wiped after): the payment path calls it
 * through risk_monitor.c's cache, not every time. */
CF_WARN_UNUSED enum cf_err api_kyc_home_country(struct api *api, const char *user_id,
                                                char country[RISK_KYC_COUNTRY_BYTES]);
/* The detail of api_kyc_check's refusal (static text): the feature closed at the tier, or the
 * amount above the single limit. The customer reads the numbers in GET /v1/me/kyc. */
const char *api_kyc_refusal_detail(struct api *api, const char *feature, int tier,
                                   int64_t amount_minor, const struct risk_kyc_limit *limit);

/* Handlers. */
enum http_action api_me_kyc(struct http_request *req, struct http_response *resp);
enum http_action api_me_kyc_details(struct http_request *req, struct http_response *resp);
enum http_action api_me_kyc_document(struct http_request *req, struct http_response *resp);
enum http_action api_me_kyc_submit(struct http_request *req, struct http_response *resp);
enum http_action api_risk_kyc_list(struct http_request *req, struct http_response *resp);
enum http_action api_risk_kyc_get(struct http_request *req, struct http_response *resp);
enum http_action api_risk_kyc_document(struct http_request *req, struct http_response *resp);
enum http_action api_risk_kyc_decide(struct http_request *req, struct http_response *resp);
enum http_action api_risk_kyc_lower(struct http_request *req, struct http_response *resp);

#endif
