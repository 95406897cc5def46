/* requests.c - payment requests and bill splits (schema version 2). */
#include "payments/internal.h"

const struct sql_migration pay_migration_requests = {
    2, "CREATE TABLE pay_requests_v2_reserved (id TEXT PRIMARY KEY);",
    "CREATE TABLE pay_requests_v2_reserved (id TEXT PRIMARY KEY);"};
