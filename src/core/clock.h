/*
 * clock.h - where time comes from.
 *
 * The ledger never reads the clock: the writer reads it once per batch through a struct
 * cf_clock and passes the time in. Tests install a fake clock and move it by hand to drive
 * expiry. Times are microseconds since the Unix epoch (UTC), as int64_t.
 */
#ifndef COFFER_CORE_CLOCK_H
#define COFFER_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

#include "core/assert.h"
#include "core/error.h"

struct cf_clock {
    int64_t (*now_us)(struct cf_clock *clock);
    _Atomic int64_t fake_now_us; /* used by the fake clock only; a test thread moves it */
};

/* The system's real-time clock. */
extern struct cf_clock cf_clock_real;

/* A fake clock starting at start_us; move it with cf_clock_fake_advance. */
void cf_clock_fake_init(struct cf_clock *clock, int64_t start_us);
void cf_clock_fake_advance(struct cf_clock *clock, int64_t delta_us);

static inline int64_t cf_clock_now_us(struct cf_clock *clock) { return clock->now_us(clock); }

/* The CLOCK_REALTIME instant delay_ms from now, for pthread_cond_timedwait. */
struct timespec cf_deadline_after_ms(long delay_ms);

/* Monotonic microseconds for measuring durations (never for timestamps that are stored). */
int64_t cf_monotonic_us(void);

/* Formats a time as RFC 3339 UTC with microseconds into buf (at least 32 bytes). */
void cf_time_format_rfc3339(int64_t time_us, char *buf, unsigned buf_bytes);

/* Parses a UTC date "YYYY-MM-DD" (its midnight) or time "YYYY-MM-DDTHH:MM:SSZ" (no fraction, no
 * offset other than Z), years 1970..9999, into microseconds. CF_ERR_INVALID_FIELD otherwise. */
CF_WARN_UNUSED enum cf_err cf_time_parse_rfc3339(const char *text, int64_t *time_us_out);

#endif
