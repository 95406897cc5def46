/*
 * bench_screen.c - how well and how fast watchlist screening works, in process.
 * Usage: bench_screen DATA_DIR [N] [threads]
 *
 * DATA_DIR holds sdn.csv, alt.csv, simple.csv and variants.csv (tests/data/risk). Prints, one
 * line each:
 *   quality T precision P recall R tp TP fp FP fn FN
 *                        the variants (query, expected entry or "none") screened against both
 *                        lists at threshold T = 800, 825, ..., 950; a hit on the expected entry
 *                        is a true positive, any other hit a false positive, a missed expected
 *                        entry a false negative
 *   synthetic_load_ms    parsing and indexing a generated list of SYNTH_ENTRIES entries (2..4
 *                        words: a first name from a fixed vocabulary, the rest made of
 *                        syllables; a third of them with one or two aliases)
 *   screen_us            mean time to screen one of N generated names (default 10000) against
 *                        that list at the default threshold, with `threads` threads (default 2)
 *   names_scored         mean list names the full score ran on per query (prefilter survivors)
 *   scan_us              the same without the prefilter (watchlist_screen_scan), on a sample,
 *                        and whether both found the same hits on it
 *   rescreen_100k_s      the time 100000 customers would take with `threads` threads
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "risk/watchlist.h"

#define SYNTH_ENTRIES 10000
#define SCAN_SAMPLE 200
#define THREADS_MAX 16
#define QUERY_BYTES 160
#define HITS_MAX 16

static const char *const first_names[] = {
    "Mohammed", "Ahmed",  "Ali",    "Omar",      "Fatima",  "Aisha",    "Hassan", "Ivan",
    "Sergei",   "Olga",   "Elena",  "Dmitri",    "Anna",    "Maria",    "Jose",   "Juan",
    "Carlos",   "Luis",   "Ana",    "Wei",       "Li",      "Jun",      "Ming",   "Hiroshi",
    "Yuki",     "Kim",    "Min",    "John",      "James",   "Michael",  "David",  "Peter",
    "Paul",     "Hans",   "Klaus",  "Jurgen",    "Pierre",  "Jean",     "Marie",  "Francois",
    "Giovanni", "Marco",  "Luca",   "Ahmad",     "Yusuf",   "Ibrahim",  "Khalid", "Tariq",
    "Abdul",    "Rustam", "Aziz",   "Farhan",    "Rahul",   "Amit",     "Priya",  "Sunita",
    "Chukwu",   "Emeka",  "Ngozi",  "Kofi",      "Kwame",   "Amina",    "Zainab", "Hamza",
    "Piotr",    "Jan",    "Tomasz", "Katarzyna", "Nikolai", "Vladimir", "Andrei", "Mihai",
    "Joao",     "Paulo",  "Pedro",  "Miguel",    "Rafael",  "Gabriel",  "Samir",  "Nadia",
};

static const char *const syllables[] = {
    "ka", "mi",  "ro",  "sa",  "al",  "ber", "ton", "ov",  "ich", "ez", "son", "ha",
    "li", "na",  "der", "man", "ko",  "vic", "sch", "mid", "ta",  "ri", "go",  "ne",
    "ra", "shi", "mo",  "to",  "ya",  "zu",  "an",  "el",  "or",  "us", "im",  "ba",
    "de", "fa",  "gu",  "lo",  "pe",  "qu",  "ru",  "sh",  "ti",  "vo", "we",  "xa",
    "yo", "zh",  "ang", "ing", "ong", "ard", "ert", "ild", "ow",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t lcg_next(uint64_t *state)
{
    *state = *state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *state >> 33;
}

/* A word of 2..3 syllables, capitalized, appended to out at *n. */
static void word_make(uint64_t *state, char *out, size_t *n)
{
    size_t parts = 2 + lcg_next(state) % 2;
    size_t start = *n;
    for (size_t i = 0; i < parts; i++) {
        const char *s = syllables[lcg_next(state) % COUNT(syllables)];
        memcpy(out + *n, s, strlen(s));
        *n += strlen(s);
    }
    out[start] = (char)(out[start] - 'a' + 'A');
}

/* A name: a first name and 1..3 syllable words, NUL-terminated in out (QUERY_BYTES). */
static void name_make(uint64_t *state, char *out)
{
    const char *first = first_names[lcg_next(state) % COUNT(first_names)];
    size_t n = strlen(first);
    memcpy(out, first, n);
    size_t words = 1 + lcg_next(state) % 3;
    for (size_t i = 0; i < words; i++) {
        out[n++] = ' ';
        word_make(state, out, &n);
    }
    out[n] = '\0';
}

static char *file_load(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *text = NULL;
    if (watchlist_file_read(path, &text, len) != CF_OK) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    return text;
}

/* Quality ------------------------------------------------------------------------------------- */

struct lists {
    struct watchlist *sdn, *simple;
};

static void lists_load(const char *dir, struct lists *l)
{
    size_t sdn_n = 0, alt_n = 0, csv_n = 0, bad_line = 0;
    bool bad_in_alt = false;
    char *sdn = file_load(dir, "sdn.csv", &sdn_n), *alt = file_load(dir, "alt.csv", &alt_n);
    char *csv = file_load(dir, "simple.csv", &csv_n);
    if (watchlist_sdn_parse(sdn, sdn_n, alt, alt_n, "sdn", &l->sdn, &bad_line, &bad_in_alt) !=
            CF_OK ||
        watchlist_csv_parse(csv, csv_n, "csv", &l->simple, &bad_line) != CF_OK) {
        fprintf(stderr, "cannot parse the lists (line %zu)\n", bad_line);
        exit(1);
    }
    free(sdn);
    free(alt);
    free(csv);
}

struct counts {
    size_t tp, fp, fn;
};

/* Screens one variant against both lists and counts it. */
static void variant_count(const struct lists *l, const char *query, const char *expected,
                          const char *dob, int threshold, struct counts *c)
{
    struct watchlist *lists[2] = {l->sdn, l->simple};
    const char *prefix[2] = {"sdn:", "csv:"};
    bool found = false;
    for (int i = 0; i < 2; i++) {
        struct watchlist_query q = {query, strlen(query), dob, NULL, threshold};
        struct watchlist_hit hits[HITS_MAX];
        struct watchlist_result res;
        if (watchlist_screen(lists[i], &q, hits, HITS_MAX, &res) != CF_OK) {
            fprintf(stderr, "cannot screen %s\n", query);
            exit(1);
        }
        for (size_t k = 0; k < res.hits_n; k++) {
            struct watchlist_entry_view v;
            watchlist_entry_get(lists[i], hits[k].entry, &v);
            char id[128];
            snprintf(id, sizeof(id), "%s%s", prefix[i], v.id);
            bool right = strcmp(id, expected) == 0;
            found = found || right;
            c->tp += right;
            c->fp += !right;
        }
    }
    c->fn += !found && strcmp(expected, "none") != 0;
}

static void bench_quality(const char *dir)
{
    struct lists l;
    lists_load(dir, &l);
    size_t len = 0;
    char *text = file_load(dir, "variants.csv", &len);
    static char buf[WATCHLIST_RECORD_BYTES_MAX];
    for (int t = 800; t <= 950; t += 25) {
        struct watchlist_csv r;
        watchlist_csv_init(&r, text, len, buf, sizeof(buf));
        struct watchlist_field f[3];
        size_t n = 0, line = 0;
        struct counts c = {0, 0, 0};
        for (bool header = true;; header = false) {
            if (watchlist_csv_next(&r, f, 3, &n, &line) != CF_OK || (n != 0 && n != 3)) {
                fprintf(stderr, "variants.csv: bad line %zu\n", line);
                exit(1);
            }
            if (n == 0)
                break;
            if (header)
                continue;
            char query[SCREEN_NAME_BYTES_MAX + 1], expected[128], dob[32];
            snprintf(query, sizeof(query), "%.*s", (int)f[0].len, f[0].text);
            snprintf(expected, sizeof(expected), "%.*s", (int)f[1].len, f[1].text);
            snprintf(dob, sizeof(dob), "%.*s", (int)f[2].len, f[2].text);
            variant_count(&l, query, expected, dob, t, &c);
        }
        printf("quality %d precision %.3f recall %.3f tp %zu fp %zu fn %zu\n", t,
               c.tp + c.fp ? (double)c.tp / (double)(c.tp + c.fp) : 1.0,
               c.tp + c.fn ? (double)c.tp / (double)(c.tp + c.fn) : 1.0, c.tp, c.fp, c.fn);
    }
    free(text);
    watchlist_destroy(l.sdn);
    watchlist_destroy(l.simple);
}

/* Speed --------------------------------------------------------------------------------------- */

/* A simple CSV list of SYNTH_ENTRIES generated entries; the caller frees it. */
static char *synth_list(size_t *len_out)
{
    size_t cap = (size_t)SYNTH_ENTRIES * 4 * QUERY_BYTES, n = 0;
    char *text = malloc(cap);
    if (text == NULL)
        exit(1);
    n += (size_t)snprintf(text, cap, "id,name,aliases\n");
    uint64_t state = 1;
    for (size_t i = 0; i < SYNTH_ENTRIES; i++) {
        char name[QUERY_BYTES], alias1[QUERY_BYTES], alias2[QUERY_BYTES];
        name_make(&state, name);
        name_make(&state, alias1);
        name_make(&state, alias2);
        size_t aliases = lcg_next(&state) % 6; /* 0..2 aliases for a third of the entries */
        n += (size_t)snprintf(text + n, cap - n, "S%zu,\"%s\",\"%s%s%s\"\n", i, name,
                              aliases >= 4 ? alias1 : "", aliases == 5 ? ";" : "",
                              aliases == 5 ? alias2 : "");
    }
    *len_out = n;
    return text;
}

struct worker {
    const struct watchlist *list;
    const char (*queries)[QUERY_BYTES];
    size_t from, to;
    size_t names_scored, hits;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    for (size_t i = w->from; i < w->to; i++) {
        struct watchlist_query q = {w->queries[i], strlen(w->queries[i]), NULL, NULL,
                                    SCREEN_THRESHOLD_DEFAULT};
        struct watchlist_hit hits[HITS_MAX];
        struct watchlist_result res;
        if (watchlist_screen(w->list, &q, hits, HITS_MAX, &res) != CF_OK)
            exit(1);
        w->names_scored += res.names_scored;
        w->hits += res.hits_total;
    }
    return NULL;
}

/* Screens queries[0..n) on threads and returns the elapsed microseconds. */
static int64_t screen_all(const struct watchlist *list, const char (*queries)[QUERY_BYTES],
                          size_t n, size_t threads, size_t *scored_out, size_t *hits_out)
{
    struct worker w[THREADS_MAX];
    pthread_t tid[THREADS_MAX];
    int64_t t0 = cf_monotonic_us();
    for (size_t i = 0; i < threads; i++) {
        w[i] = (struct worker){list, queries, n * i / threads, n * (i + 1) / threads, 0, 0};
        if (pthread_create(&tid[i], NULL, worker_run, &w[i]) != 0)
            exit(1);
    }
    *scored_out = *hits_out = 0;
    for (size_t i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        *scored_out += w[i].names_scored;
        *hits_out += w[i].hits;
    }
    return cf_monotonic_us() - t0;
}

/* Screens a sample both ways; returns the scan's mean microseconds and whether hits agreed. */
static double scan_compare(const struct watchlist *list, const char (*queries)[QUERY_BYTES],
                           size_t n, bool *same_out)
{
    int64_t spent = 0;
    *same_out = true;
    for (size_t i = 0; i < n; i++) {
        struct watchlist_query q = {queries[i], strlen(queries[i]), NULL, NULL,
                                    SCREEN_THRESHOLD_DEFAULT};
        struct watchlist_hit a[HITS_MAX], b[HITS_MAX];
        struct watchlist_result ra, rb;
        int64_t t0 = cf_monotonic_us();
        if (watchlist_screen_scan(list, &q, a, HITS_MAX, &ra) != CF_OK)
            exit(1);
        spent += cf_monotonic_us() - t0;
        if (watchlist_screen(list, &q, b, HITS_MAX, &rb) != CF_OK)
            exit(1);
        *same_out = *same_out && ra.hits_total == rb.hits_total &&
                    memcmp(a, b, ra.hits_n * sizeof(a[0])) == 0;
    }
    return (double)spent / (double)n;
}

static void bench_speed(size_t n, size_t threads)
{
    size_t len = 0;
    char *text = synth_list(&len);
    struct watchlist *list = NULL;
    size_t bad_line = 0;
    int64_t t0 = cf_monotonic_us();
    if (watchlist_csv_parse(text, len, "synthetic", &list, &bad_line) != CF_OK) {
        fprintf(stderr, "synthetic list: bad line %zu\n", bad_line);
        exit(1);
    }
    printf("synthetic_load_ms %.1f ms (%zu entries)\n", (double)(cf_monotonic_us() - t0) / 1000.0,
           watchlist_entries_n(list));
    free(text);
    char(*queries)[QUERY_BYTES] = malloc(n * sizeof(*queries));
    if (queries == NULL)
        exit(1);
    uint64_t state = 99;
    for (size_t i = 0; i < n; i++)
        name_make(&state, queries[i]);
    size_t scored = 0, hits = 0;
    int64_t us = screen_all(list, (const char(*)[QUERY_BYTES])queries, n, threads, &scored, &hits);
    double per_name_us = (double)us / (double)n;
    printf("screen_us %.1f us per name, %zu names on %zu threads, %zu hits\n", per_name_us, n,
           threads, hits);
    printf("names_scored %.1f per query\n", (double)scored / (double)n);
    bool same = false;
    size_t sample = n < SCAN_SAMPLE ? n : SCAN_SAMPLE;
    double scan_us = scan_compare(list, (const char(*)[QUERY_BYTES])queries, sample, &same);
    printf("scan_us %.1f us per name without the prefilter on %zu names, same hits: %s\n", scan_us,
           sample, same ? "yes" : "NO");
    printf("rescreen_100k_s %.1f s on %zu threads\n", per_name_us * 100000.0 / 1e6, threads);
    free(queries);
    watchlist_destroy(list);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: bench_screen DATA_DIR [N] [threads]\n");
        return 2;
    }
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 10000;
    size_t threads = argc > 3 ? strtoul(argv[3], NULL, 10) : 2;
    if (n == 0 || threads == 0 || threads > THREADS_MAX) {
        fprintf(stderr, "N must be positive and threads 1..%d\n", THREADS_MAX);
        return 2;
    }
    bench_quality(argv[1]);
    bench_speed(n, threads);
    return 0;
}
