/* clock.c - the real and the fake clock; see clock.h. */
#include "core/clock.h"

#include <stdio.h>
#include <time.h>

#include "core/assert.h"

static int64_t clock_real_now_us(struct cf_clock *clock)
{
    (void)clock;
    struct timespec ts;
    CF_ASSERT(clock_gettime(CLOCK_REALTIME, &ts) == 0);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct cf_clock cf_clock_real = {.now_us = clock_real_now_us, .fake_now_us = 0};

static int64_t clock_fake_now_us(struct cf_clock *clock) { return clock->fake_now_us; }

void cf_clock_fake_init(struct cf_clock *clock, int64_t start_us)
{
    CF_ASSERT(start_us >= 0);
    clock->now_us = clock_fake_now_us;
    clock->fake_now_us = start_us;
}

void cf_clock_fake_advance(struct cf_clock *clock, int64_t delta_us)
{
    CF_ASSERT(clock->now_us == clock_fake_now_us);
    CF_ASSERT(delta_us >= 0);
    clock->fake_now_us += delta_us;
}

int64_t cf_monotonic_us(void)
{
    struct timespec ts;
    CF_ASSERT(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cf_time_format_rfc3339(int64_t time_us, char *buf, unsigned buf_bytes)
{
    CF_ASSERT(buf_bytes >= 32);
    time_t secs = (time_t)(time_us / 1000000);
    long micros = (long)(time_us % 1000000);
    if (micros < 0) {
        micros += 1000000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, buf_bytes, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
}

struct timespec cf_deadline_after_ms(long delay_ms)
{
    CF_ASSERT(delay_ms >= 0 && delay_ms < 1000000);
    struct timespec ts;
    CF_ASSERT(clock_gettime(CLOCK_REALTIME, &ts) == 0);
    ts.tv_sec += delay_ms / 1000;
    ts.tv_nsec += (delay_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}
