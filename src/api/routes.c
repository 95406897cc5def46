/*
 * routes.c - the route table: every path the API serves, declared once.
 *
 * The server dispatches from it (404 unknown path, 405 wrong method, 413 body too large,
 * 401/403 by scope), `coffer routes` prints it, and a test checks docs/api/openapi.yaml
 * against that output.
 */
#include "api/api.h"
#include "api/pay.h"
#include "api/pay_fx.h"
#include "api/pay_paycode.h"
#include "api/pay_reconcile.h"
#include "api/pay_requests.h"
#include "api/pay_statements.h"
#include "api/risk_monitor.h"
#include "api/risk_cases.h"
#include "api/risk_freeze.h"
#include "api/risk_kyc.h"
#include "api/risk_rules.h"
#include "api/risk_screening.h"

#define NO_BODY 0
#define SMALL HTTP_BODY_BYTES_MAX
#define AUTH_BODY (8 * 1024) /* credentials are small; refuse big bodies before parsing */
#define BATCH HTTP_BATCH_BODY_BYTES_MAX
#define PUB HTTP_PUBLIC
#define ADMIN HTTP_ROLE_ADMIN
#define STAFF_READ (HTTP_ROLE_ADMIN | HTTP_ROLE_AUDITOR | HTTP_ROLE_SUPPORT | HTTP_ROLE_RISK)
#define ANY HTTP_ROLES_SIGNED_IN
#define CUST HTTP_ROLE_CUSTOMER
#define AUDIT (HTTP_ROLE_AUDITOR | HTTP_ROLE_ADMIN)
#define OFF api_offload_finish
#define MER HTTP_ROLE_MERCHANT
#define J HTTP_BODY_JSON

const struct http_route api_routes[] = {
    {HTTP_GET, "/healthz", api_healthz, NULL, HTTP_PUBLIC, NO_BODY, false, "healthz",
     HTTP_BODY_JSON},
    {HTTP_GET, "/metrics", api_metrics, NULL, STAFF_READ, NO_BODY, false, "metrics",
     HTTP_BODY_JSON},
    {HTTP_GET, "/v1/ledger/currencies", api_currencies_list, NULL, ANY, NO_BODY, false,
     "currencies_list", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/ledger/accounts", api_account_create, api_write_finish, ADMIN, SMALL, true,
     "account_create", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/ledger/accounts", api_accounts_list, NULL, STAFF_READ, NO_BODY, false,
     "accounts_list", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/ledger/accounts/{id}", api_account_get, NULL, STAFF_READ, NO_BODY, false,
     "account_get", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/ledger/accounts/{id}/freeze", api_account_freeze, api_write_finish, ADMIN,
     SMALL, true, "account_freeze", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/ledger/accounts/{id}/unfreeze", api_account_unfreeze, api_write_finish, ADMIN,
     SMALL, true, "account_unfreeze", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/ledger/accounts/{id}/transfers", api_account_transfers, NULL, STAFF_READ,
     NO_BODY, false, "account_transfers", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/ledger/transfers", api_transfer_create, api_write_finish, ADMIN, SMALL, true,
     "transfer_create", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/ledger/transfers/batch", api_transfers_batch, api_write_finish, ADMIN, BATCH,
     true, "transfers_batch", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/ledger/transfers/{id}", api_transfer_get, NULL, STAFF_READ, NO_BODY, false,
     "transfer_get", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/ledger/transfers/{id}/post", api_transfer_post, api_write_finish, ADMIN, SMALL,
     true, "transfer_post", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/ledger/transfers/{id}/void", api_transfer_void, api_write_finish, ADMIN, SMALL,
     true, "transfer_void", HTTP_BODY_JSON},

    /* The gateway's signed callbacks (public: the signature is the credential) */
    {HTTP_POST, "/v1/gateway/callbacks", api_gateway_callback_route, OFF, PUB, 4096, false,
     "gateway_callback", HTTP_BODY_FORM},

    /* Sign-up and sign-in (public) */
    {HTTP_POST, "/v1/auth/register", api_auth_register, OFF, PUB, AUTH_BODY, false, "register",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/auth/register/verify", api_auth_register_verify, OFF, PUB, AUTH_BODY, false,
     "register_verify", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/auth/sign-in", api_auth_sign_in, OFF, PUB, AUTH_BODY, false, "sign_in",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/auth/sign-in/mfa", api_auth_sign_in_mfa, OFF, PUB, AUTH_BODY, false,
     "sign_in_mfa", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/auth/sign-in/enrol", api_auth_sign_in_enroll, OFF, PUB, AUTH_BODY, false,
     "sign_in_enrol", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/auth/password/reset", api_auth_reset, OFF, PUB, AUTH_BODY, false,
     "password_reset", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/auth/password/reset/confirm", api_auth_reset_confirm, OFF, PUB, AUTH_BODY,
     false, "password_reset_confirm", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/auth/sign-out", api_auth_sign_out, OFF, ANY, AUTH_BODY, false, "sign_out",
     HTTP_BODY_JSON},

    /* The signed-in person */
    {HTTP_GET, "/v1/me", api_me_get, OFF, ANY, NO_BODY, false, "me_get", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/me/sessions", api_me_sessions, OFF, ANY, NO_BODY, false, "me_sessions",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/sessions/revoke-others", api_me_sessions_revoke_others, OFF, ANY, AUTH_BODY,
     false, "me_sessions_revoke_others", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/sessions/{id}/revoke", api_me_session_revoke, OFF, ANY, AUTH_BODY, false,
     "me_session_revoke", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/challenges", api_me_challenge, OFF, ANY, AUTH_BODY, false, "me_challenge",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/password", api_me_password, OFF, ANY, AUTH_BODY, false, "me_password",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/login", api_me_login, OFF, ANY, AUTH_BODY, false, "me_login",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/login/confirm", api_me_login_confirm, OFF, ANY, AUTH_BODY, false,
     "me_login_confirm", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/mfa/totp", api_me_totp_begin, OFF, ANY, AUTH_BODY, false, "me_totp_begin",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/mfa/totp/confirm", api_me_totp_confirm, OFF, ANY, AUTH_BODY, false,
     "me_totp_confirm", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/mfa/totp/disable", api_me_totp_disable, OFF, ANY, AUTH_BODY, false,
     "me_totp_disable", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/export", api_me_export, OFF, CUST, AUTH_BODY, false, "me_export",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/close", api_me_close, OFF, CUST, AUTH_BODY, false, "me_close",
     HTTP_BODY_JSON},
    {HTTP_GET, "/v1/me/accounts", api_me_accounts, OFF, CUST, NO_BODY, false, "me_accounts",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/accounts", api_me_account_open, OFF, CUST, AUTH_BODY, false,
     "me_account_open", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/me/accounts/{id}", api_me_account_get, NULL, CUST, NO_BODY, false,
     "me_account_get", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/me/accounts/{id}/transfers", api_me_account_transfers, NULL, CUST, NO_BODY,
     false, "me_account_transfers", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/me/transfers", api_me_transfer_create, OFF, CUST, SMALL, true,
     "me_transfer_create", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/me/transfers/{id}", api_me_transfer_get, NULL, CUST, NO_BODY, false,
     "me_transfer_get", HTTP_BODY_JSON},

    /* Money movement (the customer) */
    {HTTP_POST, "/v1/me/handle", api_me_handle, OFF, CUST, AUTH_BODY, false, "me_handle", J},
    {HTTP_POST, "/v1/me/quotes", api_me_quote, OFF, CUST, SMALL, false, "me_quote", J},
    {HTTP_POST, "/v1/me/sends", api_me_send, OFF, CUST, SMALL, true, "me_send", J},
    {HTTP_POST, "/v1/me/qr/scan", api_me_qr_scan, OFF, CUST, SMALL, false, "me_qr_scan", J},
    {HTTP_POST, "/v1/me/payments", api_me_pay, OFF, CUST, SMALL, true, "me_pay", J},
    {HTTP_POST, "/v1/me/cards", api_me_card_add, OFF, CUST, AUTH_BODY, false, "me_card_add", J},
    {HTTP_GET, "/v1/me/cards", api_me_cards, OFF, CUST, NO_BODY, false, "me_cards", J},
    {HTTP_POST, "/v1/me/cards/{id}/remove", api_me_card_remove, OFF, CUST, AUTH_BODY, false,
     "me_card_remove", J},
    {HTTP_POST, "/v1/me/topups", api_me_topup, OFF, CUST, SMALL, true, "me_topup", J},
    {HTTP_POST, "/v1/me/topups/{id}/challenge", api_me_topup_challenge, OFF, CUST, AUTH_BODY, false,
     "me_topup_challenge", J},
    {HTTP_POST, "/v1/me/withdrawals", api_me_withdrawal, OFF, CUST, SMALL, true, "me_withdrawal",
     J},
    {HTTP_GET, "/v1/me/activity", api_me_activity, OFF, CUST, NO_BODY, false, "me_activity", J},
    {HTTP_GET, "/v1/me/operations/{id}", api_me_operation, OFF, CUST, NO_BODY, false,
     "me_operation", J},

    /* routes: fx (customer) */
    {HTTP_POST, "/v1/me/conversions/quote", api_me_conversion_quote, OFF, CUST, SMALL, false,
     "me_conversion_quote", J},
    {HTTP_POST, "/v1/me/conversions", api_me_conversion, OFF, CUST, SMALL, true, "me_conversion",
     J},
    /* routes: requests */
    {HTTP_POST, "/v1/me/requests", api_me_request_create, OFF, CUST, SMALL, false,
     "me_request_create", J},
    {HTTP_GET, "/v1/me/requests", api_me_requests, OFF, CUST, NO_BODY, false, "me_requests", J},
    {HTTP_POST, "/v1/me/requests/split", api_me_request_split, OFF, CUST, SMALL, false,
     "me_request_split", J},
    {HTTP_GET, "/v1/me/requests/{id}", api_me_request_get, OFF, CUST, NO_BODY, false,
     "me_request_get", J},
    {HTTP_POST, "/v1/me/requests/{id}/pay", api_me_request_pay, OFF, CUST, SMALL, true,
     "me_request_pay", J},
    {HTTP_POST, "/v1/me/requests/{id}/decline", api_me_request_decline, OFF, CUST, SMALL, false,
     "me_request_decline", J},
    {HTTP_POST, "/v1/me/requests/{id}/cancel", api_me_request_cancel, OFF, CUST, SMALL, false,
     "me_request_cancel", J},
    /* routes: paycode (customer) */
    {HTTP_POST, "/v1/me/paycode/devices", api_me_paycode_device_add, OFF, CUST, AUTH_BODY, false,
     "me_paycode_device_add", J},
    {HTTP_GET, "/v1/me/paycode/devices", api_me_paycode_devices, OFF, CUST, NO_BODY, false,
     "me_paycode_devices", J},
    {HTTP_POST, "/v1/me/paycode/devices/{id}/revoke", api_me_paycode_device_revoke, OFF, CUST,
     AUTH_BODY, false, "me_paycode_device_revoke", J},
    {HTTP_GET, "/v1/me/paycode/current", api_me_paycode_current, OFF, CUST, NO_BODY, false,
     "me_paycode_current", J},
    /* routes: statements (customer) */
    {HTTP_GET, "/v1/me/activity/export", api_me_activity_export, OFF, CUST, NO_BODY, false,
     "me_activity_export", J},
    {HTTP_GET, "/v1/me/statements/{month}", api_me_statement, OFF, CUST, NO_BODY, false,
     "me_statement", J},
    /* routes: kyc */
    {HTTP_GET, "/v1/me/kyc", api_me_kyc, OFF, CUST, NO_BODY, false, "me_kyc", J},
    {HTTP_POST, "/v1/me/kyc/details", api_me_kyc_details, OFF, CUST, AUTH_BODY, false,
     "me_kyc_details", J},
    {HTTP_POST, "/v1/me/kyc/documents", api_me_kyc_document, OFF, CUST,
     API_KYC_DOCUMENT_BODY_BYTES_MAX, false, "me_kyc_document", J},
    {HTTP_POST, "/v1/me/kyc/submit", api_me_kyc_submit, OFF, CUST, AUTH_BODY, false,
     "me_kyc_submit", J},
    {HTTP_GET, "/v1/risk/kyc", api_risk_kyc_list, OFF, STAFF_READ, NO_BODY, false, "risk_kyc_list",
     J},
    {HTTP_GET, "/v1/risk/kyc/{id}", api_risk_kyc_get, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN | HTTP_ROLE_SUPPORT, NO_BODY, false, "risk_kyc_get", J},
    {HTTP_GET, "/v1/risk/kyc/{id}/documents/{doc_id}", api_risk_kyc_document, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN | HTTP_ROLE_SUPPORT, NO_BODY, false, "risk_kyc_document",
     J},
    {HTTP_POST, "/v1/risk/kyc/{id}/decision", api_risk_kyc_decide, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_kyc_decide", J},
    {HTTP_POST, "/v1/risk/kyc/{id}/tier", api_risk_kyc_lower, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_kyc_lower", J},

    /* Staff */
    {HTTP_POST, "/v1/bootstrap", api_bootstrap, OFF, HTTP_ROLE_BOOTSTRAP, AUTH_BODY, false,
     "bootstrap", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/admin/staff", api_admin_staff_create, OFF, ADMIN, AUTH_BODY, false,
     "staff_create", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/admin/users/{id}", api_admin_user_get, OFF,
     HTTP_ROLE_ADMIN | HTTP_ROLE_SUPPORT | HTTP_ROLE_RISK, NO_BODY, false, "user_get",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/admin/users/{id}/role", api_admin_role_set, OFF, ADMIN, AUTH_BODY, false,
     "role_set", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/admin/outbox", api_admin_outbox, OFF, ADMIN, NO_BODY, false, "outbox",
     HTTP_BODY_JSON},
    {HTTP_GET, "/v1/audit", api_audit_list, OFF, AUDIT, NO_BODY, false, "audit_list",
     HTTP_BODY_JSON},
    {HTTP_POST, "/v1/admin/merchants", api_admin_merchant_create, OFF, ADMIN, AUTH_BODY, false,
     "merchant_create", HTTP_BODY_JSON},

    {HTTP_POST, "/v1/admin/merchants/{id}/profile", api_admin_merchant_profile, OFF, ADMIN, SMALL,
     false, "merchant_profile_set", J},
    {HTTP_GET, "/v1/admin/fees", api_admin_fees, OFF, STAFF_READ, NO_BODY, false, "fees_list", J},
    {HTTP_POST, "/v1/admin/fees", api_admin_fee_set, OFF, ADMIN, SMALL, false, "fee_set", J},

    /* routes: fx (admin) */
    {HTTP_POST, "/v1/admin/rates", api_admin_rate_set, OFF, ADMIN, SMALL, false, "rate_set", J},
    {HTTP_POST, "/v1/admin/rates/load", api_admin_rates_load, OFF, ADMIN, SMALL, false,
     "rates_load", J},
    {HTTP_GET, "/v1/rates", api_rates_list, OFF, ANY, NO_BODY, false, "rates_list", J},
    /* routes: reconcile (admin) */
    {HTTP_POST, "/v1/admin/reconcile", api_admin_reconcile, OFF, AUDIT,
     API_RECONCILE_BODY_BYTES_MAX, false, "reconcile", J},
    /* routes: reviews */
    {HTTP_POST, "/v1/risk/reviews/{id}/decision", api_risk_review_decision, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_review_decision", J},
    /* routes: rules */
    {HTTP_GET, "/v1/risk/features", api_risk_features_list, NULL, STAFF_READ, NO_BODY, false,
     "risk_features_list", J},
    {HTTP_GET, "/v1/risk/rules", api_risk_rules_list, OFF, STAFF_READ, NO_BODY, false,
     "risk_rules_list", J},
    {HTTP_POST, "/v1/risk/rules", api_risk_rule_create, OFF, HTTP_ROLE_RISK | HTTP_ROLE_ADMIN,
     SMALL, true, "risk_rule_create", J},
    {HTTP_POST, "/v1/risk/rules/dry-run", api_risk_rules_dry_run, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, false, "risk_rules_dry_run", J},
    {HTTP_GET, "/v1/risk/rules/{id}", api_risk_rule_get, OFF, STAFF_READ, NO_BODY, false,
     "risk_rule_get", J},
    {HTTP_POST, "/v1/risk/rules/{id}", api_risk_rule_update, OFF, HTTP_ROLE_RISK | HTTP_ROLE_ADMIN,
     SMALL, true, "risk_rule_update", J},
    {HTTP_POST, "/v1/risk/rules/{id}/delete", api_risk_rule_delete, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_rule_delete", J},
    {HTTP_GET, "/v1/risk/decisions", api_risk_decisions_list, OFF, STAFF_READ, NO_BODY, false,
     "risk_decisions_list", J},
    {HTTP_GET, "/v1/risk/decisions/{id}", api_risk_decision_get, OFF, STAFF_READ, NO_BODY, false,
     "risk_decision_get", J},
    /* routes: cases */
    {HTTP_GET, "/v1/risk/cases", api_risk_cases_list, OFF, STAFF_READ, NO_BODY, false,
     "risk_cases_list", J},
    {HTTP_GET, "/v1/risk/cases/{id}", api_risk_case_get, OFF, STAFF_READ, NO_BODY, false,
     "risk_case_get", J},
    {HTTP_POST, "/v1/risk/cases/{id}/assign", api_risk_case_assign, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_case_assign", J},
    {HTTP_POST, "/v1/risk/cases/{id}/notes", api_risk_case_note, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_case_note", J},
    {HTTP_POST, "/v1/risk/cases/{id}/evidence", api_risk_case_evidence, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_case_evidence", J},
    {HTTP_POST, "/v1/risk/cases/{id}/decision", api_risk_case_decide, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_case_decide", J},
    {HTTP_GET, "/v1/risk/cases/{id}/report", api_risk_case_report, OFF, STAFF_READ, NO_BODY,
     false, "risk_case_report", J},
    {HTTP_POST, "/v1/risk/aml/sweep", api_risk_aml_sweep_run, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, false, "risk_aml_sweep", J},
    /* routes: risk */
    {HTTP_POST, "/v1/risk/parties/{id}/freeze", api_risk_freeze, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_freeze", J},
    {HTTP_POST, "/v1/risk/parties/{id}/unfreeze", api_risk_unfreeze, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_unfreeze", J},
    {HTTP_GET, "/v1/risk/parties/{id}/freeze", api_risk_freeze_get, OFF, STAFF_READ, NO_BODY, false,
     "risk_freeze_get", J},
    {HTTP_GET, "/v1/risk/freezes", api_risk_freezes_list, OFF, STAFF_READ, NO_BODY, false,
     "risk_freezes_list", J},
    /* routes: screening */
    {HTTP_POST, "/v1/risk/lists", api_risk_lists_load, OFF, HTTP_ROLE_RISK | HTTP_ROLE_ADMIN,
     API_SCREENING_LIST_BODY_BYTES_MAX, true, "risk_lists_load", J},
    {HTTP_GET, "/v1/risk/lists", api_risk_lists_list, OFF, STAFF_READ, NO_BODY, false,
     "risk_lists_list", J},
    {HTTP_POST, "/v1/risk/screening/run", api_risk_screening_run, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, false, "risk_screening_run", J},
    {HTTP_GET, "/v1/risk/screening/status", api_risk_screening_status, OFF, STAFF_READ, NO_BODY,
     false, "risk_screening_status", J},
    {HTTP_GET, "/v1/risk/parties/{id}/screening", api_risk_party_screening, OFF, STAFF_READ,
     NO_BODY, false, "risk_party_screening", J},
    {HTTP_POST, "/v1/risk/parties/{id}/screening/clear", api_risk_party_screening_clear, OFF,
     HTTP_ROLE_RISK | HTTP_ROLE_ADMIN, SMALL, true, "risk_party_screening_clear", J},
    {HTTP_POST, "/v1/risk/screen", api_risk_screen_adhoc, OFF, HTTP_ROLE_RISK | HTTP_ROLE_ADMIN,
     SMALL, false, "risk_screen_adhoc", J},

    /* Merchant users (owner rights checked by the identity service) */
    {HTTP_GET, "/v1/merchant", api_merchant_get, OFF, HTTP_ROLE_MERCHANT, NO_BODY, false,
     "merchant_get", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/merchant/users", api_merchant_users, OFF, HTTP_ROLE_MERCHANT, NO_BODY, false,
     "merchant_users", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/merchant/users", api_merchant_user_add, OFF, HTTP_ROLE_MERCHANT, AUTH_BODY,
     false, "merchant_user_add", HTTP_BODY_JSON},
    {HTTP_POST, "/v1/merchant/users/{id}/remove", api_merchant_user_remove, OFF, HTTP_ROLE_MERCHANT,
     AUTH_BODY, false, "merchant_user_remove", HTTP_BODY_JSON},
    {HTTP_GET, "/v1/merchant/profile", api_merchant_profile, OFF, MER, NO_BODY, false,
     "merchant_profile", J},
    {HTTP_POST, "/v1/merchant/qr", api_merchant_qr, OFF, MER, SMALL, false, "merchant_qr", J},
    {HTTP_POST, "/v1/merchant/payouts", api_merchant_payout, OFF, MER, SMALL, true,
     "merchant_payout", J},
    {HTTP_GET, "/v1/merchant/activity", api_merchant_activity, OFF, MER, NO_BODY, false,
     "merchant_activity", J},
    {HTTP_POST, "/v1/merchant/payments/{id}/refund", api_merchant_refund, OFF, MER, SMALL, true,
     "merchant_refund", J},
    /* routes: paycode (merchant) */
    {HTTP_POST, "/v1/merchant/paycode-charges", api_merchant_paycode_charge, OFF, MER, SMALL, true,
     "merchant_paycode_charge", J},
    {HTTP_POST, "/v1/merchant/holds", api_merchant_hold_create, OFF, MER, SMALL, true,
     "merchant_hold_create", J},
    {HTTP_GET, "/v1/merchant/holds/{id}", api_merchant_hold_get, OFF, MER, NO_BODY, false,
     "merchant_hold_get", J},
    {HTTP_POST, "/v1/merchant/holds/{id}/capture", api_merchant_hold_capture, OFF, MER, SMALL, true,
     "merchant_hold_capture", J},
    {HTTP_POST, "/v1/merchant/holds/{id}/release", api_merchant_hold_release, OFF, MER, SMALL, true,
     "merchant_hold_release", J},
    /* routes: statements (merchant) */
    {HTTP_GET, "/v1/merchant/activity/export", api_merchant_activity_export, OFF, MER, NO_BODY,
     false, "merchant_activity_export", J},
    {HTTP_GET, "/v1/merchant/statements/{month}", api_merchant_statement, OFF, MER, NO_BODY, false,
     "merchant_statement", J},
    {HTTP_GET, "/v1/merchant/payouts/{id}/report", api_merchant_payout_report, OFF, MER, NO_BODY,
     false, "merchant_payout_report", J},
};

const size_t api_routes_n = sizeof(api_routes) / sizeof(api_routes[0]);
_Static_assert(sizeof(api_routes) / sizeof(api_routes[0]) <= HTTP_ROUTES_MAX, "too many routes");
