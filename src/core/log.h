/*
 * log.h - structured logs: one JSON object a line on stderr.
 *
 * cf_log(level, msg, key, value, ..., NULL) writes {"ts":..,"level":..,"msg":..,key:value,...}
 * with every value a string, escaped. Lines are written with a single write(2) so concurrent
 * threads never interleave. Never pass a secret, token, password or card number as a value:
 * there is no redaction layer behind this, by design the callers must not hand secrets over.
 */
#ifndef COFFER_CORE_LOG_H
#define COFFER_CORE_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Lines below this level are dropped. Set once at start-up. */
void cf_log_set_level(enum log_level level);

/* Parses "debug", "info", "warn", "error"; returns -1 when unknown. */
int cf_log_level_parse(const char *text);

/* Key/value pairs of strings, terminated by a NULL key. */
void cf_log(enum log_level level, const char *msg, ...) __attribute__((sentinel));

#endif
