/* log.c - JSON-lines logger; see log.h. */
#include "core/log.h"

#include <stdarg.h>
#include <stdbool.h>
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
    bool cut; /* the line is full: later pieces are dropped */
};

/* Room kept at the end of a line for the closing quote of a cut value and "}\n". */
#define LINE_TAIL_BYTES 3

static bool line_put(struct line *l, const char *s, size_t n)
{
    if (l->len + n + LINE_TAIL_BYTES > sizeof(l->buf))
        return false; /* whole pieces only, so an escape is never cut in half */
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

static void line_put_escaped(struct line *l, const char *s)
{
    if (l->len + 1 + 8 + LINE_TAIL_BYTES > sizeof(l->buf)) {
        l->cut = true;
        return;
    }
    line_put(l, "\"", 1);
    for (; *s != '\0' && !l->cut; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            l->cut = !line_put(l, esc, 2);
        } else if (c < 0x20) {
            int n = snprintf(esc, sizeof(esc), "\\u%04x", c);
            l->cut = !line_put(l, esc, (size_t)n);
        } else {
            l->cut = !line_put(l, (const char *)&c, 1);
        }
    }
    CF_ASSERT(l->len + LINE_TAIL_BYTES <= sizeof(l->buf));
    l->buf[l->len++] = '"'; /* the tail always has room for it */
}

static void line_put_pair(struct line *l, const char *key, const char *value)
{
    if (l->cut || l->len + 64 + LINE_TAIL_BYTES > sizeof(l->buf)) {
        l->cut = true;
        return;
    }
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
    struct line l = {.len = 0, .cut = false};
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
    CF_ASSERT(l.len + 2 <= sizeof(l.buf)); /* LINE_TAIL_BYTES kept it */
    l.buf[l.len++] = '}';
    l.buf[l.len++] = '\n';
    ssize_t w = write(STDERR_FILENO, l.buf, l.len);
    (void)w;
}
