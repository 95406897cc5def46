/*
 * limits.h - every bound in Coffer, in one place, each with its reason.
 *
 * A limit that is not here does not exist. Code checks inputs against these bounds and answers
 * a 4xx error (or refuses to start) rather than growing without end.
 */
#ifndef COFFER_CORE_LIMITS_H
#define COFFER_CORE_LIMITS_H

/* Ledger ------------------------------------------------------------------------------------ */

/* Legs of one atomic multi-leg transfer: payment + fee + cashback + taxes fit with room; more
 * is almost always a modelling error, and the writer holds a whole command in memory. */
#define LEDGER_LEGS_MAX 16

/* Items of one batch request: keeps one request's result below ~2 MiB of JSON and one batch
 * within one group commit (matches the batch endpoint's documented limit). */
#define LEDGER_BATCH_ITEMS_MAX 8190

/* A transfer code (its type, such as "p2p" or "fee"): short, printable, indexed by reports. */
#define LEDGER_CODE_BYTES_MAX 32

/* Metadata is "small JSON": enough for an order reference and a note, not for documents. */
#define LEDGER_METADATA_BYTES_MAX 1024

/* An account owner reference (a user id, a merchant id, a GL code). */
#define LEDGER_OWNER_BYTES_MAX 128

/* A currency or asset code: ISO 4217 uses 3 letters, operator assets up to 12. */
#define MONEY_CODE_BYTES_MAX 12

/* Operator-defined assets beyond ISO 4217 (points, miles, vouchers). */
#define MONEY_ASSETS_MAX 64

/* A pending transfer may hold funds for at most 30 days; longer holds are a product decision
 * that needs its own review, not a default. */
#define LEDGER_TIMEOUT_S_MAX (30LL * 24 * 3600)

/* Expired holds released per sweep, so one sweep never makes a batch unbounded. */
#define LEDGER_EXPIRE_SWEEP_MAX 1024

/* Writer --------------------------------------------------------------------------------------- */

/* Commands waiting for the writer. Past this the server answers 503 rather than queueing
 * without bound: memory stays bounded and clients back off. */
#define WRITER_QUEUE_MAX 65536

/* Journal entries in one group commit. A batch request (8190 items, each up to 1 entry) fits
 * whole; a single-transfer command is never split. */
#define WRITER_BATCH_ENTRIES_MAX 16384

/* Accounts kept in the writer's cache (SQLite only: one writer owns the database). */
#define WRITER_ACCOUNT_CACHE_MAX (1u << 20)

/* Attempts at one batch when the database reports a serialization failure or deadlock; past
 * this every command in it answers 503 storage_conflict and the client retries. */
#define WRITER_RETRIES_MAX 3

/* How often the writer looks for expired holds when it is otherwise idle. */
#define WRITER_SWEEP_INTERVAL_MS 100

/* Idempotency ---------------------------------------------------------------------------------- */

/* An Idempotency-Key header or a batch item's key. */
#define IDEM_KEY_BYTES_MAX 128

/* A key as stored: the caller's key behind its principal ("usr_0123456789ABC:" or "operator:"). */
#define IDEM_STORED_KEY_BYTES_MAX (IDEM_KEY_BYTES_MAX + 32)

/* Stored responses are kept at least 24 hours, as the API promises; purged after 48. */
#define IDEM_RETENTION_S (48LL * 3600)

/* Keys of requests in flight in this process (the 409 check). */
#define IDEM_INFLIGHT_MAX 65536

/* HTTP ----------------------------------------------------------------------------------------- */

/* The text form of a peer address (INET6_ADDRSTRLEN is 46 with the NUL). */
#define HTTP_CLIENT_IP_BYTES_MAX 45

/* Body of an ordinary request. */
#define HTTP_BODY_BYTES_MAX (64 * 1024)

/* Body of a batch request: 8190 transfers of ~300 bytes each, with headroom. */
#define HTTP_BATCH_BODY_BYTES_MAX (4 * 1024 * 1024)

/* JSON nesting: our documents are at most 4 deep (batch -> item -> metadata -> value). */
#define JSON_DEPTH_MAX 8

/* Pages of lists. */
#define PAGE_SIZE_DEFAULT 100
#define PAGE_SIZE_MAX 1000

/* Simultaneous connections, so a flood cannot exhaust file descriptors. */
#define HTTP_CONNECTIONS_MAX 4096

/* Idle keep-alive connections are closed after this long. */
#define HTTP_CONNECTION_TIMEOUT_S 60

/* A request path; longer ones cannot match any route. */
#define HTTP_PATH_BYTES_MAX 512

/* A response body: a full batch answer (8190 results of ~600 bytes) with headroom. */
#define HTTP_RESPONSE_BYTES_MAX (8 * 1024 * 1024)

/* A response for one account or transfer. */
#define HTTP_RESPONSE_SMALL_BYTES_MAX (64 * 1024)

/* A bearer token as sent; ours are 68 characters. */
#define AUTH_TOKEN_BYTES_MAX 256

/* HTTP event-loop threads: more than a few per core only adds contention. */
#define HTTP_THREADS_MAX 64

/* Currencies reported in /metrics (ISO 4217 has ~170, plus assets). */
#define METRICS_CURRENCIES_MAX 256

/* Routes in the table. */
#define HTTP_ROUTES_MAX 192

/* Path segments matched by the router (/v1/ledger/transfers/{id}/post has 5). */
#define HTTP_PATH_SEGMENTS_MAX 8

/* Request id we accept from a client's X-Request-Id (else we make one). */
#define HTTP_REQUEST_ID_BYTES_MAX 64

/* Storage -------------------------------------------------------------------------------------- */

/* Read connections in the pool: more than cores buys nothing on SQLite. */
#define STORE_READERS_MAX 16

/* How often WAL frames are copied back into the database file: often enough that the WAL stays
 * small (a few batches), rarely enough that a checkpoint copies many frames at once. */
#define CHECKPOINT_INTERVAL_MS 250

/* How long a connection waits on a lock before the request fails with 503. */
#define STORE_BUSY_TIMEOUT_MS 5000

/* Logging -------------------------------------------------------------------------------------- */

/* One log line; longer messages are cut, never split. */
#define LOG_LINE_BYTES_MAX 2048

/* Config --------------------------------------------------------------------------------------- */

#define CONFIG_LINE_BYTES_MAX 1024
#define CONFIG_PATH_BYTES_MAX 1024

#endif
