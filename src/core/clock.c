/* clock.c - the real and the fake clock; see clock.h. */
#include "core/clock.h"

#include <stdio.h>
#include <string.h>
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

/* n decimal digits at s as a number, or -1. */
static int digits_value(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

enum cf_err cf_time_parse_rfc3339(const char *text, int64_t *time_us_out)
{
    size_t len = strlen(text);
    if ((len != 10 && len != 20) || text[4] != '-' || text[7] != '-')
        return CF_ERR_INVALID_FIELD;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int y = digits_value(text, 4), mo = digits_value(text + 5, 2), d = digits_value(text + 8, 2);
    int h = 0, mi = 0, se = 0;
    if (len == 20) {
        if (text[10] != 'T' || text[13] != ':' || text[16] != ':' || text[19] != 'Z')
            return CF_ERR_INVALID_FIELD;
        h = digits_value(text + 11, 2);
        mi = digits_value(text + 14, 2);
        se = digits_value(text + 17, 2);
    }
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || se < 0 || se > 60)
        return CF_ERR_INVALID_FIELD;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != d) /* timegm normalizes 2026-02-31 to March */
        return CF_ERR_INVALID_FIELD;
    *time_us_out = (int64_t)t * 1000000;
    return CF_OK;
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
