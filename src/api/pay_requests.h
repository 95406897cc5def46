/*
 * pay_requests.h - the handlers of pay_requests.c, for the route table: payment requests
 * ("collect money") and bill splits, customers only.
 *
 *   POST /v1/me/requests              {from, amount_minor, currency, note?, expires_in_s?}
 *                                     -> 201 the request (the payer shown by masked name only)
 *   POST /v1/me/requests/split        {participants, total_minor, currency, note?,
 *                                      include_self?, expires_in_s?} -> 201 {split_id, requests}
 *   GET  /v1/me/requests              ?direction=incoming|outgoing&status=...&cursor&limit
 *   GET  /v1/me/requests/{id}
 *   POST /v1/me/requests/{id}/pay     {verification?}, Idempotency-Key -> 201 the send
 *   POST /v1/me/requests/{id}/decline (the payer)    -> 200 the request
 *   POST /v1/me/requests/{id}/cancel  (the requester) -> 200 the request
 *
 * Rules:
 *   - A request is seen by its two parties only; anyone else gets 404, as for an unknown id. A
 *     party acting in the other party's place (the requester paying, the payer cancelling)
 *     gets 409 conflict with a detail.
 *   - Paying is a send from the payer to the requester through the send's path: the send fee
 *     (api->pay.send_fee_*) is paid by the payer on top of the amount, and a total above the
 *     step-up amount needs a verification for action "send", that total, the currency and
 *     payee = the requester's user id (shown to the payer as requester.id). The answer is the
 *     send operation (its reference is the request id); a retry with the same key answers it
 *     again. Insufficient funds answer 422 and the request stays pending.
 *   - A request is paid at most once (payments/requests.h says how). Paying, declining or
 *     cancelling a request that is paid, declined, cancelled, expired or being paid answers
 *     409 conflict, the detail naming which ("the request has expired").
 *   - A split makes one request per participant in one transaction. Shares are equal, in minor
 *     units; the remainder's units go one each to the first participants, in the order given;
 *     with include_self (default false) the requester takes the last share and is asked for
 *     nothing, so the requests add up exactly to the total less that share (without it, to the
 *     total). Refused whole when a participant is unknown (404 recipient_not_found), listed
 *     twice (400 invalid_field) or the requester (422 same_account); the detail names the
 *     participant by index ("participants[2]").
 *   - Notes are personal data: sealed at rest, shown to both parties, never logged.
 */
#ifndef COFFER_API_PAY_REQUESTS_H
#define COFFER_API_PAY_REQUESTS_H

#include "api/pay.h"

enum http_action api_me_request_create(struct http_request *req, struct http_response *resp);
enum http_action api_me_request_split(struct http_request *req, struct http_response *resp);
enum http_action api_me_requests(struct http_request *req, struct http_response *resp);
enum http_action api_me_request_get(struct http_request *req, struct http_response *resp);
enum http_action api_me_request_pay(struct http_request *req, struct http_response *resp);
enum http_action api_me_request_decline(struct http_request *req, struct http_response *resp);
enum http_action api_me_request_cancel(struct http_request *req, struct http_response *resp);

#endif
