/*
 * pay_paycode.h - the handlers of pay_paycode.c, for the route table: a customer's payment-code
 * devices (register behind a step-up, list, revoke, the current code of an online device), and
 * a merchant's charges and authorization holds (place, read, capture all or part, release) made
 * with a code the customer presents. Every handler runs on the worker pool (api_offload); see
 * pay_paycode.c for the flows and payments/paycodes.h for the rules a code must pass.
 */
#ifndef COFFER_API_PAY_PAYCODE_H
#define COFFER_API_PAY_PAYCODE_H

#include "api/pay.h"

/* The customer (role customer) */
enum http_action api_me_paycode_device_add(struct http_request *req, struct http_response *resp);
enum http_action api_me_paycode_devices(struct http_request *req, struct http_response *resp);
enum http_action api_me_paycode_device_revoke(struct http_request *req, struct http_response *resp);
enum http_action api_me_paycode_current(struct http_request *req, struct http_response *resp);

/* The merchant (role merchant, owners and staff) */
enum http_action api_merchant_paycode_charge(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_hold_create(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_hold_get(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_hold_capture(struct http_request *req, struct http_response *resp);
enum http_action api_merchant_hold_release(struct http_request *req, struct http_response *resp);

#endif
