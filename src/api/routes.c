/*
 * routes.c - the route table: every path the API serves, declared once.
 *
 * The server dispatches from it (404 unknown path, 405 wrong method, 413 body too large,
 * 401/403 by scope), `coffer routes` prints it, and a test checks docs/api/openapi.yaml
 * against that output.
 */
#include "api/api.h"

#define NO_BODY 0
#define SMALL HTTP_BODY_BYTES_MAX
#define BATCH HTTP_BATCH_BODY_BYTES_MAX
#define OP (HTTP_ROLE_ADMIN | HTTP_ROLE_BOOTSTRAP)

const struct http_route api_routes[] = {
    {HTTP_GET, "/healthz", api_healthz, NULL, HTTP_PUBLIC, NO_BODY, false, "healthz"},
    {HTTP_GET, "/metrics", api_metrics, NULL, OP, NO_BODY, false, "metrics"},
    {HTTP_GET, "/v1/ledger/currencies", api_currencies_list, NULL, OP, NO_BODY, false,
     "currencies_list"},
    {HTTP_POST, "/v1/ledger/accounts", api_account_create, api_write_finish, OP, SMALL, true,
     "account_create"},
    {HTTP_GET, "/v1/ledger/accounts", api_accounts_list, NULL, OP, NO_BODY, false,
     "accounts_list"},
    {HTTP_GET, "/v1/ledger/accounts/{id}", api_account_get, NULL, OP, NO_BODY, false,
     "account_get"},
    {HTTP_POST, "/v1/ledger/accounts/{id}/freeze", api_account_freeze, api_write_finish, OP,
     SMALL, true, "account_freeze"},
    {HTTP_POST, "/v1/ledger/accounts/{id}/unfreeze", api_account_unfreeze, api_write_finish, OP,
     SMALL, true, "account_unfreeze"},
    {HTTP_GET, "/v1/ledger/accounts/{id}/transfers", api_account_transfers, NULL, OP, NO_BODY,
     false, "account_transfers"},
    {HTTP_POST, "/v1/ledger/transfers", api_transfer_create, api_write_finish, OP, SMALL, true,
     "transfer_create"},
    {HTTP_POST, "/v1/ledger/transfers/batch", api_transfers_batch, api_write_finish, OP, BATCH,
     true, "transfers_batch"},
    {HTTP_GET, "/v1/ledger/transfers/{id}", api_transfer_get, NULL, OP, NO_BODY, false,
     "transfer_get"},
    {HTTP_POST, "/v1/ledger/transfers/{id}/post", api_transfer_post, api_write_finish, OP, SMALL,
     true, "transfer_post"},
    {HTTP_POST, "/v1/ledger/transfers/{id}/void", api_transfer_void, api_write_finish, OP, SMALL,
     true, "transfer_void"},
};

const size_t api_routes_n = sizeof(api_routes) / sizeof(api_routes[0]);
_Static_assert(sizeof(api_routes) / sizeof(api_routes[0]) <= HTTP_ROUTES_MAX, "too many routes");
