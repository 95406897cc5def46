/*
 * schema.h - the SQLite schema, as numbered migrations.
 *
 * An account's history is a linked list through the journal, not a secondary index:
 * accounts.last_seq is the newest entry touching the account and each entry keeps
 * debit_prev_seq / credit_prev_seq. Appending an entry then writes only the end of the entries
 * table and the two account rows (which change anyway), instead of two random index leaves per
 * entry; reading a page of history is one primary-key lookup per entry.
 *
 * Migration i (1-based) moves a database from user_version i-1 to i. They run in one
 * transaction at open when `create` is set; a database newer than this binary is refused.
 */
#ifndef COFFER_STORE_SQLITE_SCHEMA_H
#define COFFER_STORE_SQLITE_SCHEMA_H

static const char *const sqlite_migrations[] = {
    /* 1: accounts, the journal, idempotency records, settings */
    "CREATE TABLE meta ("
    "  key   TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE accounts ("
    "  id              INTEGER PRIMARY KEY,"
    "  currency        TEXT    NOT NULL,"
    "  normal          INTEGER NOT NULL CHECK (normal IN (0, 1)),"
    "  kind            INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),"
    "  flags           INTEGER NOT NULL,"
    "  debits_posted   INTEGER NOT NULL CHECK (debits_posted >= 0),"
    "  credits_posted  INTEGER NOT NULL CHECK (credits_posted >= 0),"
    "  debits_pending  INTEGER NOT NULL CHECK (debits_pending >= 0),"
    "  credits_pending INTEGER NOT NULL CHECK (credits_pending >= 0),"
    "  created_at_us   INTEGER NOT NULL,"
    "  owner           TEXT    NOT NULL,"
    "  metadata        TEXT    NOT NULL,"
    "  last_seq        INTEGER NOT NULL"
    ");"
    "CREATE TABLE entries ("
    "  seq             INTEGER PRIMARY KEY,"
    "  type            INTEGER NOT NULL CHECK (type BETWEEN 0 AND 4),"
    "  debit_id        INTEGER NOT NULL,"
    "  credit_id       INTEGER NOT NULL,"
    "  amount          INTEGER NOT NULL CHECK (amount > 0),"
    "  currency        TEXT    NOT NULL,"
    "  code            TEXT    NOT NULL,"
    "  metadata        BLOB,"
    "  idem_key        BLOB,"
    "  pending_seq     INTEGER NOT NULL,"
    "  group_seq       INTEGER NOT NULL,"
    "  expires_at_us   INTEGER NOT NULL,"
    "  created_at_us   INTEGER NOT NULL,"
    "  hash            BLOB    NOT NULL,"
    "  status          INTEGER NOT NULL,"
    "  resolved_amount INTEGER NOT NULL,"
    "  resolution_seq  INTEGER NOT NULL,"
    "  debit_prev_seq  INTEGER NOT NULL,"
    "  credit_prev_seq INTEGER NOT NULL"
    ");"
    "CREATE UNIQUE INDEX entries_by_key ON entries (idem_key) WHERE idem_key IS NOT NULL;"
    "CREATE INDEX entries_expiring ON entries (expires_at_us)"
    "  WHERE status = 1 AND expires_at_us > 0;"
    "CREATE TABLE idempotency ("
    "  key           BLOB    PRIMARY KEY,"
    "  request_hash  BLOB    NOT NULL,"
    "  http_status   INTEGER NOT NULL,"
    "  body          BLOB    NOT NULL,"
    "  created_at_us INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX idempotency_by_age ON idempotency (created_at_us);",
};

#define SQLITE_SCHEMA_VERSION (int)(sizeof(sqlite_migrations) / sizeof(sqlite_migrations[0]))

#endif
