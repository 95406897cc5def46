/*
 * schema.h - the PostgreSQL schema, as numbered migrations, and the advisory lock keys every
 * Coffer server on one database agrees on.
 *
 * The tables, columns, constraints and partial indexes are those of the SQLite schema
 * (../sqlite/schema.h), in PostgreSQL types: INTEGER -> bigint (smallint for enums), BLOB ->
 * bytea, TEXT -> text. Codes and currencies are COLLATE "C" so that ORDER BY is byte order, as
 * in SQLite, whatever the database's locale. An account's history is a linked list through the
 * journal (accounts.last_seq, entries.debit_prev_seq / credit_prev_seq), not an index.
 *
 * Migration i (1-based) moves a database from version i-1 to i; coffer_schema holds one row per
 * applied migration. They run at open when `create` is set, all in one transaction under the
 * migration lock, so several servers starting together migrate once. A shipped migration is
 * never edited; a change is a new string at the end. A database newer than this binary is
 * refused.
 */
#ifndef COFFER_STORE_POSTGRES_SCHEMA_H
#define COFFER_STORE_POSTGRES_SCHEMA_H

/* Advisory lock keys: "coffer" in ASCII in the high six bytes (0x636f66666572), then 1 or 2,
 * written in decimal because PostgreSQL 15 has no hex literals. Never change them: a server
 * with other keys would write beside the others instead of after them. */
#define PG_LOCK_MIGRATE_KEY 7165058122144415745 /* held while migrations run */
#define PG_LOCK_WRITE_KEY 7165058122144415746   /* the one global write lock, per batch */

/* The migration bookkeeping, created (if missing) under the migration lock. */
#define PG_SCHEMA_TABLE_SQL                                                                        \
    "CREATE TABLE IF NOT EXISTS coffer_schema ("                                                   \
    "  version    integer     PRIMARY KEY,"                                                        \
    "  applied_at timestamptz NOT NULL DEFAULT now()"                                              \
    ")"

static const char *const pg_migrations[] = {
    /* 1: accounts, the journal, idempotency records, settings */
    "CREATE TABLE meta ("
    "  key   text PRIMARY KEY,"
    "  value text NOT NULL"
    ");"
    "CREATE TABLE accounts ("
    "  id              bigint   PRIMARY KEY,"
    "  currency        text     COLLATE \"C\" NOT NULL,"
    "  normal          smallint NOT NULL CHECK (normal IN (0, 1)),"
    "  kind            smallint NOT NULL CHECK (kind IN (0, 1, 2)),"
    "  flags           bigint   NOT NULL,"
    "  debits_posted   bigint   NOT NULL CHECK (debits_posted >= 0),"
    "  credits_posted  bigint   NOT NULL CHECK (credits_posted >= 0),"
    "  debits_pending  bigint   NOT NULL CHECK (debits_pending >= 0),"
    "  credits_pending bigint   NOT NULL CHECK (credits_pending >= 0),"
    "  created_at_us   bigint   NOT NULL,"
    "  owner           text     NOT NULL,"
    "  metadata        text     NOT NULL,"
    "  last_seq        bigint   NOT NULL"
    ");"
    "CREATE TABLE entries ("
    "  seq             bigint   PRIMARY KEY,"
    "  type            smallint NOT NULL CHECK (type BETWEEN 0 AND 4),"
    "  debit_id        bigint   NOT NULL,"
    "  credit_id       bigint   NOT NULL,"
    "  amount          bigint   NOT NULL CHECK (amount > 0),"
    "  currency        text     COLLATE \"C\" NOT NULL,"
    "  code            text     COLLATE \"C\" NOT NULL,"
    "  metadata        bytea,"
    "  idem_key        bytea,"
    "  pending_seq     bigint   NOT NULL,"
    "  group_seq       bigint   NOT NULL,"
    "  expires_at_us   bigint   NOT NULL,"
    "  created_at_us   bigint   NOT NULL,"
    "  hash            bytea    NOT NULL,"
    "  status          smallint NOT NULL,"
    "  resolved_amount bigint   NOT NULL,"
    "  resolution_seq  bigint   NOT NULL,"
    "  debit_prev_seq  bigint   NOT NULL,"
    "  credit_prev_seq bigint   NOT NULL"
    ");"
    "CREATE UNIQUE INDEX entries_by_key ON entries (idem_key) WHERE idem_key IS NOT NULL;"
    "CREATE INDEX entries_expiring ON entries (expires_at_us)"
    "  WHERE status = 1 AND expires_at_us > 0;"
    "CREATE TABLE idempotency ("
    "  key           bytea   PRIMARY KEY,"
    "  request_hash  bytea   NOT NULL,"
    "  http_status   integer NOT NULL,"
    "  body          bytea   NOT NULL,"
    "  created_at_us bigint  NOT NULL"
    ");"
    "CREATE INDEX idempotency_by_age ON idempotency (created_at_us);",
};

#define PG_SCHEMA_VERSION (int)(sizeof(pg_migrations) / sizeof(pg_migrations[0]))

#endif
