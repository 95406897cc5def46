/* paycodes.c - customer-presented payment codes and merchant holds (schema version 3). */
#include "payments/internal.h"

const struct sql_migration pay_migration_paycodes = {
    3, "CREATE TABLE pay_paycodes_v3_reserved (id TEXT PRIMARY KEY);",
    "CREATE TABLE pay_paycodes_v3_reserved (id TEXT PRIMARY KEY);"};
