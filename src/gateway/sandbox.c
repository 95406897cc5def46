/*
 * sandbox.c - the in-process fake gateway with documented test numbers; see gateway.h and the
 * table in README.md.
 *
 * State, under one mutex: a ring of the last GATEWAY_SANDBOX_OPS_MAX operations (op_id, what
 * was asked apart from the instrument, the first answer, whether its challenge is still open)
 * and a FIFO of callbacks to deliver, each with a monotonic due time. Every callback is due
 * the same delay after it is queued, so the FIFO is also in due order.
 *
 * Answers: submit decides and records under the lock, then sleeps latency_ms outside it and
 * answers; a PROCESSING callback is queued at the decision, due 2 * latency_ms later (latency_ms
 * after the answer). The "timeout" card is never recorded: it hangs timeout_ms every time.
 *
 * Delivery: one thread waits for the head's due time (pthread_cond_timedwait), pops it, builds
 * and signs the body outside the lock and calls the sink. Destroy sets `stopping`, wakes and
 * joins the thread; what is still queued is dropped.
 *
 * The instrument is compared with the table in place and never copied; nothing is logged.
 */
#include "gateway/gateway.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/hash.h"

/* Random bytes of a sandbox reference or event id, hex after a 4-character prefix. */
#define SANDBOX_ID_RANDOM_BYTES 12
/* The one right answer to the sandbox's challenge. */
#define SANDBOX_CHALLENGE_CODE "123456"

_Static_assert(4 + 2 * SANDBOX_ID_RANDOM_BYTES < GATEWAY_REF_BYTES_MAX, "ids fit a reference");

/* One documented test number. */
struct sandbox_number {
    enum gateway_method method;
    const char *instrument;
    enum gateway_outcome answer;   /* what submit answers */
    enum gateway_outcome callback; /* the callback's outcome, for PROCESSING */
    const char *decline_code;      /* with DECLINED and INSUFFICIENT_FUNDS answers */
};

/* The table of README.md; any other valid instrument is approved at once. */
static const struct sandbox_number sandbox_numbers[] = {
    {GATEWAY_METHOD_CARD, "4242424242424242", GATEWAY_APPROVED, 0, ""},
    {GATEWAY_METHOD_CARD, "4000000000000002", GATEWAY_DECLINED, 0, "card_declined"},
    {GATEWAY_METHOD_CARD, "4000000000009995", GATEWAY_INSUFFICIENT_FUNDS, 0, "insufficient_funds"},
    {GATEWAY_METHOD_CARD, "4000000000003220", GATEWAY_CHALLENGE, 0, ""},
    {GATEWAY_METHOD_CARD, "4000000000000119", GATEWAY_TIMEOUT, 0, ""},
    {GATEWAY_METHOD_CARD, "4000000000000077", GATEWAY_PROCESSING, GATEWAY_APPROVED, ""},
    {GATEWAY_METHOD_CARD, "4000000000000085", GATEWAY_PROCESSING, GATEWAY_DECLINED, ""},
    {GATEWAY_METHOD_BANK, "GB82WEST12345698765432", GATEWAY_APPROVED, 0, ""},
    {GATEWAY_METHOD_BANK, "DE89370400440532013000", GATEWAY_PROCESSING, GATEWAY_APPROVED, ""},
    {GATEWAY_METHOD_BANK, "FR1420041010050500013M02606", GATEWAY_DECLINED, 0, "account_closed"},
    {GATEWAY_METHOD_BANK, "NL91ABNA0417164300", GATEWAY_PROCESSING, GATEWAY_INSUFFICIENT_FUNDS, ""},
    {GATEWAY_METHOD_BANK, "BE68539007547034", GATEWAY_PROCESSING, GATEWAY_DECLINED, ""},
};

/* An operation remembered for idempotency: never its instrument. */
struct sandbox_op {
    bool used;
    bool challenge_open;
    char op_id[GATEWAY_OP_ID_BYTES_MAX];
    enum gateway_op op;
    enum gateway_method method;
    int64_t amount_minor;
    char currency[4];
    struct gateway_result result; /* the first answer */
};

/* A callback waiting for its due time. */
struct sandbox_delivery {
    int64_t due_us; /* cf_monotonic_us */
    char op_id[GATEWAY_OP_ID_BYTES_MAX];
    char reference[GATEWAY_REF_BYTES_MAX];
    enum gateway_outcome outcome;
    int64_t amount_minor;
    char currency[4];
};

struct sandbox {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the delivery thread: something queued, or stopping */
    pthread_t thread;
    bool stopping;
    int64_t latency_ms;
    int64_t timeout_ms;
    uint8_t secret[GATEWAY_SECRET_BYTES_MAX]; /* wiped by sandbox_destroy */
    size_t secret_len;
    struct cf_clock *clock;
    gateway_sink_fn sink;
    void *sink_ctx;
    size_t ops_next; /* the ring slot of the next new operation (the oldest one) */
    size_t queue_head, queue_n;
    struct sandbox_op ops[GATEWAY_SANDBOX_OPS_MAX];
    struct sandbox_delivery queue[GATEWAY_SANDBOX_QUEUE_MAX];
};

/* Helpers -------------------------------------------------------------------------------------- */

static const struct sandbox_number *number_find(enum gateway_method method, const char *instrument)
{
    for (size_t i = 0; i < sizeof(sandbox_numbers) / sizeof(sandbox_numbers[0]); i++) {
        const struct sandbox_number *n = &sandbox_numbers[i];
        if (n->method == method && strcmp(n->instrument, instrument) == 0)
            return n;
    }
    return NULL;
}

/* Sleeps ms milliseconds of real time, through signals. */
static void sleep_ms(int64_t ms)
{
    CF_ASSERT(ms >= 0 && ms <= GATEWAY_SANDBOX_TIMEOUT_MS_MAX);
    struct timespec left = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0)
        CF_ASSERT(errno == EINTR);
}

/* prefix (4 characters) + hex of random bytes into out. */
static void random_id(const char *prefix, char out[GATEWAY_REF_BYTES_MAX])
{
    CF_ASSERT(strlen(prefix) == 4);
    uint8_t bytes[SANDBOX_ID_RANDOM_BYTES];
    hash_random(bytes, sizeof(bytes));
    memcpy(out, prefix, 4);
    hash_hex(bytes, sizeof(bytes), out + 4);
    CF_ASSERT(strlen(out) == 4 + 2 * SANDBOX_ID_RANDOM_BYTES);
}

/* Operations (under the lock) ------------------------------------------------------------------ */

static struct sandbox_op *op_find_by_id(struct sandbox *sb, const char *op_id)
{
    for (size_t i = 0; i < GATEWAY_SANDBOX_OPS_MAX; i++) {
        if (sb->ops[i].used && strcmp(sb->ops[i].op_id, op_id) == 0)
            return &sb->ops[i];
    }
    return NULL;
}

static struct sandbox_op *op_find_by_reference(struct sandbox *sb, const char *reference)
{
    CF_ASSERT(sb != NULL && reference != NULL);
    for (size_t i = 0; i < GATEWAY_SANDBOX_OPS_MAX; i++) {
        struct sandbox_op *op = &sb->ops[i];
        if (op->used && op->result.outcome == GATEWAY_CHALLENGE &&
            strcmp(op->result.reference, reference) == 0)
            return op;
    }
    return NULL;
}

/* The same op_id asks the same thing (the instrument is not kept, so not compared). */
static bool op_is_same(const struct sandbox_op *op, const struct gateway_request *req)
{
    return op->op == req->op && op->method == req->method &&
           op->amount_minor == req->amount_minor && strcmp(op->currency, req->currency) == 0;
}

/* Remembers req's answer in the oldest slot of the ring. */
static struct sandbox_op *op_record(struct sandbox *sb, const struct gateway_request *req,
                                    const struct gateway_result *result)
{
    CF_ASSERT(sb->ops_next < GATEWAY_SANDBOX_OPS_MAX);
    struct sandbox_op *op = &sb->ops[sb->ops_next];
    sb->ops_next = (sb->ops_next + 1) % GATEWAY_SANDBOX_OPS_MAX;
    memset(op, 0, sizeof(*op));
    op->used = true;
    op->challenge_open = result->outcome == GATEWAY_CHALLENGE;
    memcpy(op->op_id, req->op_id, sizeof(op->op_id));
    op->op = req->op;
    op->method = req->method;
    op->amount_minor = req->amount_minor;
    memcpy(op->currency, req->currency, sizeof(op->currency));
    op->result = *result;
    CF_ASSERT(op->result.outcome != GATEWAY_TIMEOUT && op->result.reference[0] != '\0');
    return op;
}

/* Queues op's callback with outcome, due delay_ms from now, and wakes the delivery thread. */
static void delivery_queue(struct sandbox *sb, const struct sandbox_op *op,
                           enum gateway_outcome outcome, int64_t delay_ms)
{
    CF_ASSERT(sb->queue_n < GATEWAY_SANDBOX_QUEUE_MAX);
    CF_ASSERT(outcome == GATEWAY_APPROVED || outcome == GATEWAY_DECLINED ||
              outcome == GATEWAY_INSUFFICIENT_FUNDS);
    struct sandbox_delivery *d =
        &sb->queue[(sb->queue_head + sb->queue_n) % GATEWAY_SANDBOX_QUEUE_MAX];
    d->due_us = cf_monotonic_us() + delay_ms * 1000;
    memcpy(d->op_id, op->op_id, sizeof(d->op_id));
    memcpy(d->reference, op->result.reference, sizeof(d->reference));
    d->outcome = outcome;
    d->amount_minor = op->amount_minor;
    memcpy(d->currency, op->currency, sizeof(d->currency));
    sb->queue_n++;
    CF_ASSERT(pthread_cond_signal(&sb->wake) == 0);
}

/* Decides a new operation's answer from its number, records it and queues its callback.
 * CF_ERR_OVERLOADED, with nothing recorded, when a callback is due and the queue is full. */
static enum cf_err op_start(struct sandbox *sb, const struct gateway_request *req,
                            const struct sandbox_number *num, struct gateway_result *out)
{
    enum gateway_outcome answer = num != NULL ? num->answer : GATEWAY_APPROVED;
    CF_ASSERT(answer != GATEWAY_TIMEOUT);
    if (answer == GATEWAY_PROCESSING && sb->queue_n == GATEWAY_SANDBOX_QUEUE_MAX)
        return CF_ERR_OVERLOADED;
    struct gateway_result r;
    memset(&r, 0, sizeof(r));
    r.outcome = answer;
    random_id("sbx_", r.reference);
    if (num != NULL) {
        CF_ASSERT(strlen(num->decline_code) < sizeof(r.decline_code));
        memcpy(r.decline_code, num->decline_code, strlen(num->decline_code) + 1);
    }
    const struct sandbox_op *op = op_record(sb, req, &r);
    CF_ASSERT(op->used && strcmp(op->op_id, req->op_id) == 0);
    if (answer == GATEWAY_PROCESSING)
        delivery_queue(sb, op, num->callback, 2 * sb->latency_ms);
    *out = r;
    return CF_OK;
}

/* The connector ------------------------------------------------------------------------------- */

static enum cf_err sandbox_submit(void *impl, const struct gateway_request *req,
                                  struct gateway_result *out)
{
    struct sandbox *sb = impl;
    CF_ASSERT(sb != NULL && req != NULL && out != NULL);
    const struct sandbox_number *num = number_find(req->method, req->instrument);
    struct gateway_result r;
    memset(&r, 0, sizeof(r));
    enum cf_err err = CF_OK;
    bool hang = false;
    CF_ASSERT(pthread_mutex_lock(&sb->lock) == 0);
    const struct sandbox_op *op = op_find_by_id(sb, req->op_id);
    if (op != NULL) {
        err = op_is_same(op, req) ? CF_OK : CF_ERR_IDEM_KEY_REUSED;
        r = op->result;
    } else if (num != NULL && num->answer == GATEWAY_TIMEOUT) {
        hang = true;
        r.outcome = GATEWAY_TIMEOUT;
    } else {
        err = op_start(sb, req, num, &r);
    }
    CF_ASSERT(pthread_mutex_unlock(&sb->lock) == 0);
    if (err != CF_OK)
        return err;
    sleep_ms(hang ? sb->timeout_ms : sb->latency_ms);
    CF_ASSERT(r.outcome >= GATEWAY_APPROVED && r.outcome <= GATEWAY_TIMEOUT);
    *out = r;
    return CF_OK;
}

static bool code_is_right(const char *code)
{
    size_t n = strlen(code);
    return n == strlen(SANDBOX_CHALLENGE_CODE) &&
           sodium_memcmp(code, SANDBOX_CHALLENGE_CODE, n) == 0;
}

static enum cf_err sandbox_challenge_answer(void *impl, const char *reference, const char *code,
                                            struct gateway_result *out)
{
    struct sandbox *sb = impl;
    CF_ASSERT(sb != NULL && reference != NULL && code != NULL && out != NULL);
    struct gateway_result r;
    memset(&r, 0, sizeof(r));
    enum cf_err err = CF_OK;
    CF_ASSERT(pthread_mutex_lock(&sb->lock) == 0);
    struct sandbox_op *op = op_find_by_reference(sb, reference);
    if (op == NULL) {
        err = CF_ERR_NOT_FOUND;
    } else if (!op->challenge_open) {
        err = CF_ERR_CONFLICT;
    } else {
        op->challenge_open = false; /* usable once, right or wrong */
        memcpy(r.reference, op->result.reference, sizeof(r.reference));
        r.outcome = code_is_right(code) ? GATEWAY_APPROVED : GATEWAY_DECLINED;
        if (r.outcome == GATEWAY_DECLINED)
            memcpy(r.decline_code, "authentication_failed", sizeof("authentication_failed"));
    }
    CF_ASSERT(pthread_mutex_unlock(&sb->lock) == 0);
    if (err != CF_OK)
        return err;
    sleep_ms(sb->latency_ms);
    *out = r;
    return CF_OK;
}

/* Delivery ------------------------------------------------------------------------------------- */

/* Builds, signs and hands one callback to the sink (outside the lock). */
static void delivery_send(struct sandbox *sb, const struct sandbox_delivery *d)
{
    int64_t now_s = cf_clock_now_us(sb->clock) / 1000000;
    CF_ASSERT(now_s >= 0);
    char event_id[GATEWAY_REF_BYTES_MAX];
    random_id("evt_", event_id);
    struct gateway_form f;
    gateway_form_init(&f);
    gateway_form_add(&f, "event_id", event_id);
    gateway_form_add(&f, "op_id", d->op_id);
    gateway_form_add(&f, "reference", d->reference);
    gateway_form_add(&f, "outcome", gateway_outcome_name(d->outcome));
    gateway_form_add_int(&f, "amount_minor", d->amount_minor);
    gateway_form_add(&f, "currency", d->currency);
    gateway_form_add_int(&f, "created_at", now_s);
    CF_ASSERT(gateway_form_ok(&f)); /* seven bounded fields fit GATEWAY_BODY_BYTES_MAX */
    char signature[GATEWAY_SIGNATURE_BYTES_MAX];
    enum cf_err err = gateway_callback_sign(sb->secret, sb->secret_len, f.text, f.len, now_s,
                                            signature, sizeof(signature));
    CF_ASSERT(err == CF_OK); /* the secret was checked at create */
    sb->sink(sb->sink_ctx, f.text, f.len, signature);
}

static void *sandbox_deliver_run(void *arg)
{
    struct sandbox *sb = arg;
    CF_ASSERT(pthread_mutex_lock(&sb->lock) == 0);
    while (!sb->stopping) {
        if (sb->queue_n == 0) {
            CF_ASSERT(pthread_cond_wait(&sb->wake, &sb->lock) == 0);
            continue;
        }
        int64_t wait_us = sb->queue[sb->queue_head].due_us - cf_monotonic_us();
        if (wait_us > 0) {
            struct timespec until = cf_deadline_after_ms((long)((wait_us + 999) / 1000));
            int rc = pthread_cond_timedwait(&sb->wake, &sb->lock, &until);
            CF_ASSERT(rc == 0 || rc == ETIMEDOUT);
            continue;
        }
        struct sandbox_delivery d = sb->queue[sb->queue_head];
        sb->queue_head = (sb->queue_head + 1) % GATEWAY_SANDBOX_QUEUE_MAX;
        sb->queue_n--;
        CF_ASSERT(pthread_mutex_unlock(&sb->lock) == 0);
        delivery_send(sb, &d);
        CF_ASSERT(pthread_mutex_lock(&sb->lock) == 0);
    }
    CF_ASSERT(pthread_mutex_unlock(&sb->lock) == 0);
    return NULL;
}

/* Life ----------------------------------------------------------------------------------------- */

static void sandbox_destroy(void *impl)
{
    struct sandbox *sb = impl;
    CF_ASSERT(sb != NULL && !pthread_equal(pthread_self(), sb->thread));
    CF_ASSERT(pthread_mutex_lock(&sb->lock) == 0);
    sb->stopping = true;
    CF_ASSERT(pthread_cond_signal(&sb->wake) == 0);
    CF_ASSERT(pthread_mutex_unlock(&sb->lock) == 0);
    CF_ASSERT(pthread_join(sb->thread, NULL) == 0);
    pthread_cond_destroy(&sb->wake);
    pthread_mutex_destroy(&sb->lock);
    hash_wipe(sb->secret, sizeof(sb->secret));
    free(sb);
}

static const struct gateway_ops sandbox_ops = {
    .name = "sandbox",
    .submit = sandbox_submit,
    .challenge_answer = sandbox_challenge_answer,
    .destroy = sandbox_destroy,
};

static bool config_is_valid(const struct gateway_sandbox_config *cfg)
{
    return cfg->latency_ms >= 0 && cfg->latency_ms <= GATEWAY_SANDBOX_LATENCY_MS_MAX &&
           cfg->timeout_ms >= 0 && cfg->timeout_ms <= GATEWAY_SANDBOX_TIMEOUT_MS_MAX &&
           cfg->secret != NULL && cfg->secret_len >= GATEWAY_SECRET_BYTES_MIN &&
           cfg->secret_len <= GATEWAY_SECRET_BYTES_MAX;
}

enum cf_err gateway_sandbox_create(const struct gateway_sandbox_config *cfg, gateway_sink_fn sink,
                                   void *sink_ctx, struct gateway **out)
{
    CF_ASSERT(cfg != NULL && sink != NULL && out != NULL);
    if (!config_is_valid(cfg))
        return CF_ERR_CONFIG;
    enum cf_err err = gateway_sodium_init();
    if (err != CF_OK)
        return err;
    struct sandbox *sb = calloc(1, sizeof(*sb));
    if (sb == NULL)
        return CF_ERR_NOMEM;
    sb->latency_ms = cfg->latency_ms;
    sb->timeout_ms = cfg->timeout_ms;
    memcpy(sb->secret, cfg->secret, cfg->secret_len);
    sb->secret_len = cfg->secret_len;
    sb->clock = cfg->clock != NULL ? cfg->clock : &cf_clock_real;
    sb->sink = sink;
    sb->sink_ctx = sink_ctx;
    CF_ASSERT(pthread_mutex_init(&sb->lock, NULL) == 0);
    CF_ASSERT(pthread_cond_init(&sb->wake, NULL) == 0);
    if (pthread_create(&sb->thread, NULL, sandbox_deliver_run, sb) != 0) {
        pthread_cond_destroy(&sb->wake);
        pthread_mutex_destroy(&sb->lock);
        hash_wipe(sb->secret, sizeof(sb->secret));
        free(sb);
        return CF_ERR_INTERNAL;
    }
    err = gateway_connector_create(&sandbox_ops, sb, out);
    if (err != CF_OK)
        sandbox_destroy(sb);
    return err;
}
