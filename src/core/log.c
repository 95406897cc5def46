/* log.c - JSON-lines logger; see log.h. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/assert.h"
#include "core/clock.h"
#include "core/limits.h"

static enum log_level log_level_min = LOG_INFO;
static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void cf_log_set_level(enum log_level level) { log_level_min = level; }

int cf_log_level_parse(const char *text)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, log_level_names[i]) == 0)
            return i;
    }
    return -1;
}

struct line {
    char buf[LOG_LINE_BYTES_MAX];
    size_t len;
};

static void line_put(struct line *l, const char *s, size_t n)
{
    size_t room = sizeof(l->buf) - 2 - l->len; /* keep room for "}\n" */
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void line_put_escaped(struct line *l, const char *s)
{
    line_put(l, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            line_put(l, esc, 2);
        } else if (c < 0x20) {
            int n = snprintf(esc, sizeof(esc), "\\u%04x", c);
            line_put(l, esc, (size_t)n);
        } else {
            line_put(l, (const char *)&c, 1);
        }
    }
    line_put(l, "\"", 1);
}

static void line_put_pair(struct line *l, const char *key, const char *value)
{
    line_put(l, ",", 1);
    line_put_escaped(l, key);
    line_put(l, ":", 1);
    line_put_escaped(l, value != NULL ? value : "");
}

void cf_log(enum log_level level, const char *msg, ...)
{
    CF_ASSERT(level >= LOG_DEBUG && level <= LOG_ERROR);
    if (level < log_level_min)
        return;
    struct line l = {.len = 0};
    char ts[40];
    cf_time_format_rfc3339(cf_clock_now_us(&cf_clock_real), ts, sizeof(ts));
    line_put(&l, "{\"ts\":", 6);
    line_put_escaped(&l, ts);
    line_put_pair(&l, "level", log_level_names[level]);
    line_put_pair(&l, "msg", msg);
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (key == NULL)
            break;
        line_put_pair(&l, key, va_arg(ap, const char *));
    }
    va_end(ap);
    CF_ASSERT(l.len + 2 <= sizeof(l.buf));
    l.buf[l.len++] = '}';
    l.buf[l.len++] = '\n';
    ssize_t w = write(STDERR_FILENO, l.buf, l.len);
    (void)w;
}
