/*
 * risk_screening.c - the lists in memory, screening parties, the re-screening thread and the
 * screening routes; see risk_screening.h.
 *
 * The holder keeps each set it publishes in a node with a reference count, as risk_rules.c does:
 * the active node (the holder's reference plus one per reader) and the retired nodes readers
 * still hold. The re-screening thread waits on a condition variable for a request or the poll
 * timeout; a run reads the register in pages and screens each party through the same path the
 * hooks use.
 */
#include "api/risk_screening.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/pay.h"
#include "api/risk_common.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"
#include "risk/cases.h"
#include "risk/kyc.h"

#define DEDUP_KEY_BYTES (16 + RISK_LISTS_PARTY_BYTES_MAX) /* "sanctions:<party>" */
#define CASE_KEY_BYTES (32 + RISK_LISTS_ID_BYTES_MAX)     /* "case:<id>:screening_clear" */
#define DETAIL_BYTES 256                                  /* an alert's or audit line's detail */
#define WHY_BYTES 16                                      /* "load", "manual", "resume" */
#define TEXT_FIELD_BYTES_MAX 128 /* a date of birth or country an analyst types */
/* Hits one query keeps: as many as a screening keeps, so the best ones are never lost. */
#define QUERY_HITS_MAX RISK_LISTS_HITS_MAX
/* A name as the gatherer keeps it: one byte more than the matcher takes, to see it is too long. */
#define NAME_KEPT_BYTES (SCREEN_NAME_BYTES_MAX + 2)

/* The set -------------------------------------------------------------------------------------- */

struct screen_list {
    char name[RISK_LISTS_NAME_BYTES_MAX];
    uint8_t kind;
    uint64_t version;
    struct watchlist *wl;
};

struct screen_set {
    uint64_t seq; /* the stored load sequence it was built from */
    size_t n;
    struct screen_list lists[RISK_LISTS_MAX];
};

struct set_ref {
    struct screen_set *set;
    size_t refs; /* readers, plus one while it is the active set */
    struct set_ref *next;
};

/* The re-screening's progress (under job_mu). */
struct run_status {
    bool running;
    bool queued;
    bool aborted; /* the last run stopped before its end (restarted or stopping) */
    char why[WHY_BYTES];
    int64_t started_at_us, finished_at_us;
    uint64_t lists_seq; /* the set it screened against */
    uint64_t screened, hits, blocked, skipped, errors, runs;
};

struct api_screening {
    int threshold;
    pthread_mutex_t mu;         /* active, retired and every refs */
    struct set_ref *active;     /* never NULL */
    struct set_ref *retired;    /* swapped out, still held by readers */
    pthread_mutex_t rebuild_mu; /* one rebuild at a time, so sequences only grow */
    pthread_mutex_t job_mu;     /* what follows */
    pthread_cond_t job_cond;
    bool stopping;
    bool requested;
    char requested_why[WHY_BYTES];
    struct run_status status;
    bool thread_started;
    pthread_t thread;
};

static void set_destroy(struct screen_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        watchlist_destroy(set->lists[i].wl);
    free(set);
}

static struct set_ref *ref_new(struct screen_set *set)
{
    struct set_ref *r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->set = set;
        r->refs = 1;
    }
    return r;
}

static const struct screen_set *set_acquire(struct api_screening *s)
{
    pthread_mutex_lock(&s->mu);
    struct set_ref *r = s->active;
    CF_ASSERT(r != NULL && r->refs >= 1);
    r->refs++;
    const struct screen_set *set = r->set;
    pthread_mutex_unlock(&s->mu);
    return set;
}

static void set_release(struct api_screening *s, const struct screen_set *set)
{
    CF_ASSERT(s != NULL && set != NULL);
    struct set_ref *dead = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->active->set == set) {
        CF_ASSERT(s->active->refs >= 2); /* the holder's own reference stays */
        s->active->refs--;
    } else {
        struct set_ref **p = &s->retired;
        while (*p != NULL && (*p)->set != set)
            p = &(*p)->next;
        CF_ASSERT(*p != NULL && (*p)->refs >= 1); /* released more often than acquired */
        if (--(*p)->refs == 0) {
            dead = *p;
            *p = dead->next;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (dead != NULL) {
        set_destroy(dead->set);
        free(dead);
    }
}

static uint64_t active_seq(struct api_screening *s)
{
    const struct screen_set *set = set_acquire(s);
    uint64_t seq = set->seq;
    set_release(s, set);
    return seq;
}

/* Makes set active when it is newer than the active one; takes set in every case. */
static enum cf_err holder_swap(struct api_screening *s, struct screen_set *set)
{
    struct set_ref *fresh = ref_new(set);
    if (fresh == NULL) {
        set_destroy(set);
        return CF_ERR_NOMEM;
    }
    struct set_ref *dead = NULL;
    pthread_mutex_lock(&s->mu);
    struct set_ref *old = s->active;
    if (set->seq <= old->set->seq) {
        dead = fresh; /* an older or equal state: keep what runs */
    } else {
        s->active = fresh;
        if (--old->refs == 0) {
            dead = old;
        } else {
            old->next = s->retired;
            s->retired = old;
        }
    }
    CF_ASSERT(s->active->refs >= 1);
    pthread_mutex_unlock(&s->mu);
    if (dead != NULL) {
        set_destroy(dead->set);
        free(dead);
    }
    return CF_OK;
}

/* Parses a list's bytes; *bad_line_out and *bad_in_alt_out say where it failed. */
static enum cf_err list_parse(uint8_t kind, const char *name, const char *content, size_t len,
                              const char *alt, size_t alt_len, struct watchlist **out,
                              size_t *bad_line_out, bool *bad_in_alt_out)
{
    CF_ASSERT(risk_lists_name_valid(name) && content != NULL && out != NULL);
    *bad_in_alt_out = false;
    if (kind == RISK_LISTS_SDN)
        return watchlist_sdn_parse(content, len, alt, alt_len, name, out, bad_line_out,
                                   bad_in_alt_out);
    CF_ASSERT(kind == RISK_LISTS_SIMPLE && alt == NULL);
    return watchlist_csv_parse(content, len, name, out, bad_line_out);
}

/* Parses the stored list meta->name again; CF_ERR_CORRUPT (logged) when it no longer parses or
 * no longer gives its version. */
static enum cf_err list_load_stored(struct api *api, const struct risk_list *meta,
                                    struct watchlist **out)
{
    char *content = NULL, *alt = NULL;
    size_t len = 0, alt_len = 0, bad_line = 0;
    bool bad_in_alt = false;
    struct risk_list now;
    enum cf_err err =
        risk_lists_bytes(api->risk_lists, meta->name, &now, &content, &len, &alt, &alt_len);
    if (err == CF_OK)
        err =
            list_parse(now.kind, now.name, content, len, alt, alt_len, out, &bad_line, &bad_in_alt);
    if (err == CF_OK && watchlist_version(*out) != now.version) {
        watchlist_destroy(*out);
        err = CF_ERR_CORRUPT;
    }
    free(content);
    free(alt);
    if (err == CF_ERR_INVALID_FIELD || err == CF_ERR_CORRUPT) {
        char line[24];
        snprintf(line, sizeof(line), "%zu", bad_line);
        cf_log(LOG_ERROR, "screening: a stored list does not parse", "list", meta->name, "line",
               line, "file", bad_in_alt ? "alt_content" : "content", NULL);
        err = CF_ERR_CORRUPT;
    }
    return err;
}

/* A list given to the rebuild: the one a load just parsed, so it is not parsed twice. */
struct given_list {
    const char *name;
    uint64_t version;
    struct watchlist *wl; /* taken by the set when used (set to NULL) */
};

/* Builds the set of the stored lists, tagged seq. */
static enum cf_err set_build(struct api *api, uint64_t seq, struct given_list *given,
                             struct screen_set **out)
{
    struct risk_list *metas = calloc(RISK_LISTS_MAX, sizeof(*metas));
    struct screen_set *set = calloc(1, sizeof(*set));
    size_t n = 0;
    enum cf_err err = metas == NULL || set == NULL ? CF_ERR_NOMEM : CF_OK;
    if (err == CF_OK)
        err = risk_lists_all(api->risk_lists, metas, RISK_LISTS_MAX, &n);
    for (size_t i = 0; err == CF_OK && i < n; i++) {
        struct screen_list *sl = &set->lists[set->n];
        snprintf(sl->name, sizeof(sl->name), "%s", metas[i].name);
        sl->kind = metas[i].kind;
        sl->version = metas[i].version;
        if (given != NULL && given->wl != NULL && strcmp(given->name, metas[i].name) == 0 &&
            given->version == metas[i].version) {
            sl->wl = given->wl;
            given->wl = NULL;
        } else {
            err = list_load_stored(api, &metas[i], &sl->wl);
        }
        if (err == CF_OK)
            set->n++;
    }
    free(metas);
    if (err != CF_OK) {
        set_destroy(set);
        return err;
    }
    set->seq = seq;
    CF_ASSERT(set->n <= RISK_LISTS_MAX);
    *out = set;
    return CF_OK;
}

/* Builds the stored lists and makes them active when the stored sequence is newer. given (may
 * be NULL) is used when it is still the stored version of its name, and freed otherwise. */
static enum cf_err holder_rebuild(struct api *api, struct given_list *given)
{
    struct api_screening *s = api->screening;
    enum cf_err err = CF_OK;
    if (api->risk_lists != NULL) {
        pthread_mutex_lock(&s->rebuild_mu);
        uint64_t seq = 0;
        struct screen_set *set = NULL;
        err = risk_lists_seq(api->risk_lists, &seq);
        if (err == CF_OK && seq > active_seq(s))
            err = set_build(api, seq, given, &set);
        if (err == CF_OK && set != NULL)
            err = holder_swap(s, set);
        pthread_mutex_unlock(&s->rebuild_mu);
    }
    if (given != NULL) {
        watchlist_destroy(given->wl);
        given->wl = NULL;
    }
    return err;
}

/* Gathering a party's names ---------------------------------------------------------------------
 */

struct party_name {
    char text[NAME_KEPT_BYTES];
    size_t len;
    char dob[RISK_KYC_DATE_BYTES]; /* "" when not known */
    char country[TEXT_FIELD_BYTES_MAX];
};

/* A party's names. Personal data: wiped when done (names_free). */
struct party_names {
    struct party_name v[API_SCREENING_NAMES_MAX];
    size_t n;
};

static void names_free(struct party_names *ns)
{
    if (ns != NULL)
        hash_wipe(ns, sizeof(*ns));
    free(ns);
}

/* Whether text is "YYYY", "YYYY-MM" or "YYYY-MM-DD" (months 01..12, days 01..31). */
static bool dob_form_valid(const char *text)
{
    size_t n = strlen(text);
    if (n != 4 && n != 7 && n != 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 4 || i == 7;
        if (dash ? text[i] != '-' : (text[i] < '0' || text[i] > '9'))
            return false;
    }
    int month = n >= 7 ? (text[5] - '0') * 10 + (text[6] - '0') : 1;
    int day = n == 10 ? (text[8] - '0') * 10 + (text[9] - '0') : 1;
    return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

/* Adds a name (NULL or "" adds nothing), once per name and date of birth. A date that is not
 * one of the matcher's forms is dropped. */
static void names_add(struct party_names *ns, const char *text, const char *dob,
                      const char *country)
{
    if (text == NULL || text[0] == '\0' || ns->n == API_SCREENING_NAMES_MAX)
        return;
    size_t len = strnlen(text, NAME_KEPT_BYTES - 1);
    const char *d = dob != NULL ? dob : "";
    size_t dl = strlen(d);
    bool dob_ok = dl == 0 || (dl < sizeof(ns->v[0].dob) && dob_form_valid(d));
    for (size_t i = 0; i < ns->n; i++) {
        if (ns->v[i].len == len && memcmp(ns->v[i].text, text, len) == 0 &&
            strcmp(ns->v[i].dob, dob_ok ? d : "") == 0)
            return;
    }
    struct party_name *p = &ns->v[ns->n++];
    memcpy(p->text, text, len);
    p->text[len] = '\0';
    p->len = len;
    snprintf(p->dob, sizeof(p->dob), "%s", dob_ok ? d : "");
    snprintf(p->country, sizeof(p->country), "%s", country != NULL ? country : "");
}

/* The legal names of a customer's KYC details (latest decided, current draft). */
static enum cf_err names_kyc(struct api *api, const char *party, struct party_names *ns)
{
    if (api->kyc == NULL)
        return CF_OK;
    struct risk_kyc_view *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = risk_kyc_view_get(api->kyc, party, false, v);
    const struct risk_kyc_submission *subs[2] = {v->has_latest ? &v->latest : NULL,
                                                 v->has_current ? &v->current : NULL};
    for (size_t i = 0; err == CF_OK && i < 2; i++) {
        if (subs[i] == NULL || !subs[i]->has_details)
            continue;
        const struct risk_kyc_details *d = &subs[i]->details;
        names_add(ns, d->legal_name, d->date_of_birth,
                  d->nationality[0] != '\0' ? d->nationality : d->country);
    }
    hash_wipe(v, sizeof(*v));
    free(v);
    return err;
}

/* The names Coffer holds for party. CF_ERR_NOT_FOUND for a party that is not a customer or a
 * merchant, or a closed customer. */
static enum cf_err names_held(struct api *api, const char *party, struct party_names *ns)
{
    enum cf_err err = CF_OK;
    if (strncmp(party, ID_PREFIX_USER, strlen(ID_PREFIX_USER)) == 0) {
        struct identity_profile p;
        err = identity_profile_get(api->identity, party, &p);
        if (err == CF_OK && (p.role != IDENTITY_CUSTOMER || p.closed))
            err = CF_ERR_NOT_FOUND; /* staff are not screened; a closed account moves nothing */
        if (err == CF_OK)
            names_add(ns, p.name, NULL, NULL);
        hash_wipe(&p, sizeof(p));
        return err == CF_OK ? names_kyc(api, party, ns) : err;
    }
    struct identity_merchant im;
    struct pay_merchant m;
    if ((err = identity_merchant_get(api->identity, party, &im)) != CF_OK)
        return err;
    bool profile =
        api->payments != NULL && payments_merchant_get(api->payments, party, false, &m) == CF_OK;
    const char *country = profile ? m.country : NULL;
    names_add(ns, im.legal_name, NULL, country);
    names_add(ns, im.display_name, NULL, country);
    if (profile)
        names_add(ns, m.display_name, NULL, country);
    hash_wipe(&m, sizeof(m));
    return CF_OK;
}

/* Screening ---------------------------------------------------------------------------------------
 */

/* A hit of one list, the best over the names. */
struct merged_hit {
    size_t list; /* index in the set */
    struct watchlist_hit h;
};

/* What screening a party's names found. */
struct screen_outcome {
    struct risk_screening s;                          /* the screening as it is recorded */
    struct risk_screen_hit hits[RISK_LISTS_HITS_MAX]; /* best first */
    bool blocked_now;
    struct risk_screen_block block;
    char case_id[RISK_CASE_ID_BYTES_MAX];
};

/* Copies src into dst (dst_bytes), replacing bytes that are not UTF-8 and control characters
 * with '?': list files are published data of any encoding, and JSON and the store take UTF-8. */
static void text_clean(char *dst, size_t dst_bytes, const char *src)
{
    CF_ASSERT(dst != NULL && dst_bytes > 0 && src != NULL);
    size_t n = strnlen(src, dst_bytes - 1), o = 0;
    for (size_t i = 0; i < n;) {
        const unsigned char *s = (const unsigned char *)src + i;
        size_t len = s[0] < 0x80             ? 1
                     : (s[0] & 0xe0) == 0xc0 ? 2
                     : (s[0] & 0xf0) == 0xe0 ? 3
                     : (s[0] & 0xf8) == 0xf0 ? 4
                                             : 0;
        bool ok = len > 0 && i + len <= n && !(len == 1 && (s[0] < 0x20 || s[0] == 0x7f));
        for (size_t k = 1; ok && k < len; k++)
            ok = (s[k] & 0xc0) == 0x80;
        if (ok && len == 2)
            ok = s[0] >= 0xc2 && !(s[0] == 0xc2 && s[1] < 0xa0); /* no overlong, no C1 */
        if (ok && len == 3)
            ok = !(s[0] == 0xe0 && s[1] < 0xa0) && !(s[0] == 0xed && s[1] >= 0xa0);
        if (ok && len == 4)
            ok = !(s[0] == 0xf0 && s[1] < 0x90) && s[0] <= 0xf4 && !(s[0] == 0xf4 && s[1] >= 0x90);
        if (!ok) {
            dst[o++] = '?';
            i++;
            continue;
        }
        memcpy(dst + o, s, len);
        o += len;
        i += len;
    }
    dst[o] = '\0';
    CF_ASSERT(o < dst_bytes);
}

/* Adds the hits of one query on list li into m (m_n of them, room for m_max). */
static void merge(struct merged_hit *m, size_t *m_n, size_t m_max, size_t li,
                  const struct watchlist_hit *hits, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < *m_n && !(m[k].list == li && m[k].h.entry == hits[i].entry))
            k++;
        if (k < *m_n) {
            if (hits[i].score > m[k].h.score)
                m[k].h = hits[i];
        } else {
            CF_ASSERT(*m_n < m_max);
            m[(*m_n)++] = (struct merged_hit){.list = li, .h = hits[i]};
        }
    }
}

static int merged_order(const void *a, const void *b)
{
    const struct merged_hit *x = a, *y = b;
    if (x->h.score != y->h.score)
        return x->h.score > y->h.score ? -1 : 1;
    if (x->list != y->list)
        return x->list < y->list ? -1 : 1;
    return x->h.entry < y->h.entry ? -1 : x->h.entry > y->h.entry;
}

/* Screens one name against list wl; a date of birth the matcher refuses is dropped. */
static enum cf_err query_run(const struct watchlist *wl, const struct party_name *p, int threshold,
                             struct watchlist_hit *hits, struct watchlist_result *res)
{
    struct watchlist_query q = {.name = p->text,
                                .name_len = p->len,
                                .dob = p->dob[0] != '\0' ? p->dob : NULL,
                                .country = p->country[0] != '\0' ? p->country : NULL,
                                .threshold = threshold};
    enum cf_err err = watchlist_screen(wl, &q, hits, QUERY_HITS_MAX, res);
    if (err == CF_ERR_INVALID_FIELD && q.dob != NULL) {
        q.dob = NULL;
        err = watchlist_screen(wl, &q, hits, QUERY_HITS_MAX, res);
    }
    return err;
}

/* Whether the matcher takes the name; CF_ERR_NOMEM passes through. */
static enum cf_err name_screenable(const struct party_name *p, bool *ok)
{
    struct screen_name norm;
    enum cf_err err = p->len > SCREEN_NAME_BYTES_MAX
                          ? CF_ERR_INVALID_FIELD
                          : screen_name_normalize(p->text, p->len, &norm);
    *ok = err == CF_OK;
    return err == CF_ERR_INVALID_FIELD ? CF_OK : err;
}

/* Screens ns against every list of set into m (*m_n), counting the refused names and the hits
 * found past each query's bound. */
static enum cf_err names_screen(const struct screen_set *set, int threshold,
                                const struct party_names *ns, struct arena *arena,
                                struct merged_hit *m, size_t *m_n, size_t m_max,
                                struct risk_screening *s)
{
    CF_ASSERT(ns->n <= API_SCREENING_NAMES_MAX && set->n <= RISK_LISTS_MAX);
    struct watchlist_hit *hits = arena_calloc(arena, QUERY_HITS_MAX, sizeof(*hits));
    if (hits == NULL)
        return CF_ERR_NOMEM;
    uint32_t past = 0;
    enum cf_err err = CF_OK;
    for (size_t i = 0; err == CF_OK && i < ns->n && set->n > 0; i++) {
        bool ok = false;
        if ((err = name_screenable(&ns->v[i], &ok)) != CF_OK || !ok) {
            s->unscreenable_n += ok ? 0 : 1;
            continue;
        }
        for (size_t li = 0; err == CF_OK && li < set->n; li++) {
            struct watchlist_result res;
            err = query_run(set->lists[li].wl, &ns->v[i], threshold, hits, &res);
            if (err == CF_OK) {
                merge(m, m_n, m_max, li, hits, res.hits_n);
                past += (uint32_t)(res.hits_total - res.hits_n);
            }
        }
    }
    s->names_n = (uint32_t)ns->n;
    s->hits_total = (uint32_t)*m_n + past;
    CF_ASSERT(*m_n <= m_max && s->unscreenable_n <= s->names_n);
    return err;
}

/* Fills o from the merged hits (sorted here) while set is held: the best RISK_LISTS_HITS_MAX
 * with their lists' names and texts, the lists screened and the outcome. */
static void outcome_fill(const struct screen_set *set, struct merged_hit *m, size_t m_n,
                         struct screen_outcome *o)
{
    qsort(m, m_n, sizeof(*m), merged_order);
    size_t n = m_n < RISK_LISTS_HITS_MAX ? m_n : RISK_LISTS_HITS_MAX;
    for (size_t i = 0; i < n; i++) {
        const struct screen_list *sl = &set->lists[m[i].list];
        struct watchlist_entry_view e;
        watchlist_entry_get(sl->wl, m[i].h.entry, &e);
        struct risk_screen_hit *h = &o->hits[i];
        snprintf(h->list, sizeof(h->list), "%s", sl->name);
        text_clean(h->entry_id, sizeof(h->entry_id), e.id);
        text_clean(h->matched_name, sizeof(h->matched_name),
                   watchlist_name_get(sl->wl, m[i].h.entry, m[i].h.name));
        h->score = m[i].h.score;
        h->name_score = m[i].h.name_score;
        h->dob = (uint8_t)m[i].h.dob;
        h->country = (uint8_t)m[i].h.country;
    }
    o->s.hits_n = (uint32_t)n;
    o->s.lists_n = set->n;
    for (size_t i = 0; i < set->n; i++) {
        snprintf(o->s.lists[i].name, sizeof(o->s.lists[i].name), "%s", set->lists[i].name);
        o->s.lists[i].version = set->lists[i].version;
    }
    o->s.outcome = n > 0                     ? RISK_LISTS_HIT
                   : o->s.unscreenable_n > 0 ? RISK_LISTS_REVIEW
                                             : RISK_LISTS_CLEAR;
    CF_ASSERT(o->s.hits_n <= o->s.hits_total && o->s.lists_n <= RISK_LISTS_MAX);
}

/* Screens ns against the active set into o. */
static enum cf_err screen_run(struct api *api, struct arena *arena, const struct party_names *ns,
                              struct screen_outcome *o)
{
    struct api_screening *sc = api->screening;
    const struct screen_set *set = set_acquire(sc);
    size_t m_max = API_SCREENING_NAMES_MAX * RISK_LISTS_MAX * QUERY_HITS_MAX, m_n = 0;
    struct merged_hit *m = arena_calloc(arena, m_max, sizeof(*m));
    enum cf_err err = m == NULL
                          ? CF_ERR_NOMEM
                          : names_screen(set, sc->threshold, ns, arena, m, &m_n, m_max, &o->s);
    if (err == CF_OK)
        outcome_fill(set, m, m_n, o);
    set_release(sc, set);
    return err;
}

/* Files the alert of a screening that was not clear; o->case_id gets its case. */
static enum cf_err alert_file(struct api *api, const char *party, struct screen_outcome *o)
{
    CF_ASSERT(api->cases != NULL && o->s.outcome != RISK_LISTS_CLEAR);
    char(*refs)[RISK_LISTS_REF_BYTES_MAX] = calloc(RISK_LISTS_HITS_MAX + 1, sizeof(*refs));
    const char **ops = calloc(RISK_LISTS_HITS_MAX + 1, sizeof(*ops));
    enum cf_err err = refs == NULL || ops == NULL ? CF_ERR_NOMEM : CF_OK;
    size_t n = 0;
    for (size_t i = 0; err == CF_OK && i < o->s.hits_n; i++, n++) {
        risk_lists_hit_ref(o->hits[i].list, o->hits[i].entry_id, refs[n]);
        ops[n] = refs[n];
    }
    if (err == CF_OK && o->s.unscreenable_n > 0) {
        snprintf(refs[n], RISK_LISTS_REF_BYTES_MAX, "%s", RISK_LISTS_REF_UNSCREENABLE);
        ops[n] = refs[n];
        n++;
    }
    char key[DEDUP_KEY_BYTES], detail[DETAIL_BYTES];
    snprintf(key, sizeof(key), "sanctions:%s", party);
    snprintf(detail, sizeof(detail),
             "trigger=%s hits=%" PRIu32 " unscreenable=%" PRIu32 " best=%s score=%d", o->s.trigger,
             o->s.hits_total, o->s.unscreenable_n, n > 0 ? ops[0] : "none",
             o->s.hits_n > 0 ? o->hits[0].score : 0);
    struct risk_case_alert a = {.kind = RISK_CASE_SANCTIONS,
                                .subject = party,
                                .dedup_key = key,
                                .scenario =
                                    o->s.hits_n > 0 ? "sanctions_hit" : "sanctions_unscreenable",
                                .detail = detail,
                                .evidence_ops = ops,
                                .evidence_n = n};
    bool existed = false;
    if (err == CF_OK)
        err = risk_cases_alert(api->cases, &a, o->s.at_us, o->case_id, &existed);
    free(refs);
    free(ops);
    return err;
}

/* The audit line of a block this screening set. */
static void block_audit(struct api *api, const char *party, const struct screen_outcome *o)
{
    struct identity_ctx none = {0};
    char detail[DETAIL_BYTES];
    snprintf(detail, sizeof(detail), "event %s case %s trigger %s hits %" PRIu32, o->block.event_id,
             o->case_id[0] != '\0' ? o->case_id : "none", o->s.trigger, o->s.hits_total);
    cf_best_effort(identity_audit(api->identity, &none, "sanctions", "risk.screening_block", party,
                                  "ok", detail));
}

/* Records o, files its alert, names the block's case and audits a new block. */
static enum cf_err outcome_record(struct api *api, const char *party, struct screen_outcome *o)
{
    CF_ASSERT(strcmp(o->s.subject, party) == 0 && o->s.hits_n <= RISK_LISTS_HITS_MAX);
    enum cf_err err = risk_lists_screening_put(api->risk_lists, &o->s, o->hits, o->s.hits_n,
                                               &o->block, &o->blocked_now);
    if (err != CF_OK || o->s.outcome == RISK_LISTS_CLEAR)
        return err;
    if (api->cases != NULL)
        err = alert_file(api, party, o);
    if (err == CF_OK && o->block.blocked && o->case_id[0] != '\0' &&
        strcmp(o->block.case_id, o->case_id) != 0)
        err = risk_lists_block_case_set(api->risk_lists, party, o->block.event_id, o->case_id);
    if (o->blocked_now)
        block_audit(api, party, o); /* the block stands even when the case could not be filed */
    return err;
}

/* api_risk_screen_party with the outcome for the re-screening's counts. */
static enum cf_err party_screen(struct api *api, struct arena *arena, const char *party,
                                const char *name, const char *dob, const char *country,
                                const char *trigger, struct screen_outcome *o)
{
    CF_ASSERT(api != NULL && arena != NULL && party != NULL && o != NULL);
    CF_ASSERT(risk_lists_trigger_valid(trigger));
    memset(o, 0, sizeof(*o));
    if (!risk_lists_party_valid(party))
        return CF_ERR_NOT_FOUND;
    struct party_names *ns = calloc(1, sizeof(*ns));
    if (ns == NULL)
        return CF_ERR_NOMEM;
    names_add(ns, name, dob, country);
    enum cf_err err = names_held(api, party, ns);
    if (err == CF_OK && ns->n == 0)
        err = CF_ERR_NOT_FOUND;
    snprintf(o->s.subject, sizeof(o->s.subject), "%s", party);
    snprintf(o->s.trigger, sizeof(o->s.trigger), "%s", trigger);
    o->s.at_us = api_pay_now_us();
    if (err == CF_OK)
        err = screen_run(api, arena, ns, o);
    names_free(ns);
    if (err == CF_OK)
        err = outcome_record(api, party, o);
    if (err != CF_OK && err != CF_ERR_NOT_FOUND)
        cf_log(LOG_WARN, "screening failed", "party", party, "trigger", trigger, "error",
               cf_err_code(err), NULL);
    return err;
}

enum cf_err api_risk_screen_party(struct api *api, struct arena *arena, const char *party,
                                  const char *name, const char *dob, const char *country,
                                  const char *trigger, bool *hit_out)
{
    CF_ASSERT(api != NULL && arena != NULL && party != NULL && risk_lists_trigger_valid(trigger));
    if (api->screening == NULL || api->risk_lists == NULL) {
        if (hit_out != NULL)
            *hit_out = false;
        return CF_OK;
    }
    struct screen_outcome *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return CF_ERR_NOMEM;
    enum cf_err err = party_screen(api, arena, party, name, dob, country, trigger, o);
    if (err == CF_OK && hit_out != NULL)
        *hit_out = o->s.outcome != RISK_LISTS_CLEAR;
    free(o);
    return err;
}

enum cf_err api_risk_screening_check(struct api *api, const char *party)
{
    CF_ASSERT(api != NULL);
    if (api->risk_lists == NULL || party == NULL || party[0] == '\0')
        return CF_OK;
    struct risk_screen_block b;
    enum cf_err err = risk_lists_block_peek(api->risk_lists, party, &b);
    if (err == CF_ERR_NOT_FOUND)
        return CF_OK;
    if (err != CF_OK)
        return err;
    return b.blocked ? CF_ERR_RISK_BLOCKED : CF_OK;
}

/* Clearing ----------------------------------------------------------------------------------------
 */

static void clear_audit(struct api *api, const struct identity_ctx *ctx, const char *by,
                        const struct risk_screen_event *ev)
{
    struct identity_ctx none = {0};
    char detail[DETAIL_BYTES];
    snprintf(detail, sizeof(detail), "event %s block %s case %s", ev->id, ev->block_id,
             ev->case_id[0] != '\0' ? ev->case_id : "none");
    cf_best_effort(identity_audit(api->identity, ctx != NULL ? ctx : &none, by,
                                  "risk.screening_clear", ev->subject, "ok", detail));
}

enum cf_err api_risk_screening_case_cleared(struct api *api, const struct identity_ctx *ctx,
                                            const char *case_id, const char *by)
{
    CF_ASSERT(api != NULL && case_id != NULL && by != NULL);
    if (api->risk_lists == NULL || api->cases == NULL)
        return CF_OK;
    struct risk_case *c = calloc(1, sizeof(*c));
    struct risk_screen_event *ev = calloc(1, sizeof(*ev));
    enum cf_err err =
        c == NULL || ev == NULL ? CF_ERR_NOMEM : risk_cases_get(api->cases, case_id, c);
    bool act =
        err == CF_OK && c->kind == RISK_CASE_SANCTIONS && c->decision == RISK_CASE_DECISION_CLEAR;
    char key[CASE_KEY_BYTES];
    snprintf(key, sizeof(key), "case:%s:screening_clear", case_id);
    struct risk_lists_idem idem = {.key = key};
    hash_sha256(key, strlen(key), idem.request_hash);
    bool replay = false;
    if (act) {
        const char *reason =
            risk_lists_reason_valid(c->reason, NULL) ? c->reason : "cleared by its case";
        err = risk_lists_block_clear(api->risk_lists, c->subject, reason, by, case_id, &idem,
                                     api_pay_now_us(), ev, &replay);
        if (err == CF_OK && !replay)
            clear_audit(api, ctx, by, ev);
        if (err == CF_ERR_NOT_FOUND || err == CF_ERR_CONFLICT)
            err = CF_OK; /* not blocked, or blocked by another case: that case decides */
    }
    if (c != NULL)
        hash_wipe(c, sizeof(*c));
    if (ev != NULL)
        hash_wipe(ev, sizeof(*ev));
    free(c);
    free(ev);
    return err;
}

/* Re-screening ------------------------------------------------------------------------------------
 */

void api_risk_screening_rescreen(struct api *api, const char *why)
{
    CF_ASSERT(api != NULL && why != NULL);
    struct api_screening *s = api->screening;
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->job_mu);
    s->requested = true;
    s->status.queued = true;
    snprintf(s->requested_why, sizeof(s->requested_why), "%s", why);
    pthread_cond_signal(&s->job_cond);
    pthread_mutex_unlock(&s->job_mu);
}

/* Whether the run must end now: stopping, or a new request restarts it. */
static bool run_interrupted(struct api_screening *s)
{
    pthread_mutex_lock(&s->job_mu);
    bool stop = s->stopping || s->requested;
    pthread_mutex_unlock(&s->job_mu);
    return stop;
}

/* Screens one party of a run and counts it. */
static void run_one(struct api *api, struct arena *arena, const char *party,
                    struct screen_outcome *o)
{
    struct api_screening *s = api->screening;
    arena_reset(arena);
    enum cf_err err = party_screen(api, arena, party, NULL, NULL, NULL, "rescreen", o);
    pthread_mutex_lock(&s->job_mu);
    if (err == CF_OK) {
        s->status.screened++;
        s->status.hits += o->s.outcome != RISK_LISTS_CLEAR ? 1 : 0;
        s->status.blocked += o->blocked_now ? 1 : 0;
    } else if (err == CF_ERR_NOT_FOUND) {
        s->status.skipped++;
    } else {
        s->status.errors++;
    }
    pthread_mutex_unlock(&s->job_mu);
}

/* Every subject of the register, in id order. false when interrupted or the register failed. */
static bool run_register(struct api *api, struct arena *arena, struct screen_outcome *o)
{
    char(*page)[RISK_LISTS_PARTY_BYTES_MAX] = calloc(API_SCREENING_PAGE, sizeof(*page));
    char after[RISK_LISTS_PARTY_BYTES_MAX] = "";
    size_t n = 0;
    bool ok = page != NULL;
    do {
        ok = ok &&
             risk_lists_subjects(api->risk_lists, after, page, API_SCREENING_PAGE, &n) == CF_OK;
        for (size_t i = 0; ok && i < n; i++) {
            ok = !run_interrupted(api->screening);
            if (ok)
                run_one(api, arena, page[i], o);
        }
        if (ok && n > 0)
            memcpy(after, page[n - 1], sizeof(after));
    } while (ok && n == API_SCREENING_PAGE);
    free(page);
    return ok;
}

/* Screens party unless this run (started at started_us) screened it already. false when
 * interrupted or its screening could not be read. */
static bool run_unscreened(struct api *api, struct arena *arena, const char *party,
                           int64_t started_us, struct screen_outcome *o)
{
    CF_ASSERT(party != NULL && started_us >= 0);
    struct risk_screen_block b;
    enum cf_err err = risk_lists_block_peek(api->risk_lists, party, &b);
    bool ok = !run_interrupted(api->screening) && (err == CF_OK || err == CF_ERR_NOT_FOUND);
    if (ok && (err == CF_ERR_NOT_FOUND || b.screened_at_us < started_us))
        run_one(api, arena, party, o);
    return ok;
}

/* The customers of the KYC queue in state not screened since started_us. */
static bool run_kyc_state(struct api *api, struct arena *arena, uint8_t state, int64_t started_us,
                          struct risk_kyc_submission *subs, struct screen_outcome *o)
{
    uint64_t cursor = 0;
    size_t n = 0;
    bool ok = true;
    do {
        ok = risk_kyc_list(api->kyc, state, cursor, subs, RISK_KYC_LIST_MAX, &n) == CF_OK;
        for (size_t i = 0; ok && i < n; i++)
            ok = run_unscreened(api, arena, subs[i].user_id, started_us, o);
        if (ok && n > 0)
            cursor = subs[n - 1].queue_row;
    } while (ok && n == RISK_KYC_LIST_MAX);
    return ok;
}

_Static_assert(API_SCREENING_PAGE <= IDENTITY_CUSTOMERS_PAGE_MAX, "a customers page fits");

/* Every open customer identity holds, not screened since started_us: those the register does
 * not know (registered before screening existed, never gave KYC details). */
static bool run_customers(struct api *api, struct arena *arena, int64_t started_us,
                          struct screen_outcome *o)
{
    char(*page)[ID_TEXT_BYTES_MAX] = calloc(API_SCREENING_PAGE, sizeof(*page));
    char after[ID_TEXT_BYTES_MAX] = "";
    size_t n = 0;
    bool ok = page != NULL;
    do {
        ok = ok &&
             identity_customers_page(api->identity, after, page, API_SCREENING_PAGE, &n) == CF_OK;
        for (size_t i = 0; ok && i < n; i++)
            ok = run_unscreened(api, arena, page[i], started_us, o);
        if (ok && n > 0)
            memcpy(after, page[n - 1], sizeof(after));
    } while (ok && n == API_SCREENING_PAGE);
    free(page);
    return ok;
}

/* One run over everyone; false when it did not reach its end. */
static bool run_all(struct api *api, int64_t started_us)
{
    struct arena *arena = arena_create(API_SCREENING_ARENA_BYTES);
    struct screen_outcome *o = calloc(1, sizeof(*o));
    struct risk_kyc_submission *subs = calloc(RISK_KYC_LIST_MAX, sizeof(*subs));
    bool ok = arena != NULL && o != NULL && subs != NULL && run_register(api, arena, o);
    static const uint8_t states[] = {RISK_KYC_PENDING, RISK_KYC_APPROVED, RISK_KYC_REJECTED};
    for (size_t i = 0; ok && api->kyc != NULL && i < sizeof(states); i++)
        ok = run_kyc_state(api, arena, states[i], started_us, subs, o);
    if (ok && api->identity != NULL)
        ok = run_customers(api, arena, started_us, o);
    arena_destroy(arena);
    free(o);
    free(subs);
    return ok;
}

/* Runs one re-screening (called by the thread with job_mu released). */
static void run_job(struct api *api, const char *why)
{
    struct api_screening *s = api->screening;
    uint64_t seq = active_seq(s);
    int64_t started = api_pay_now_us();
    pthread_mutex_lock(&s->job_mu);
    s->status = (struct run_status){.running = true,
                                    .queued = s->requested,
                                    .started_at_us = started,
                                    .lists_seq = seq,
                                    .runs = s->status.runs + 1};
    snprintf(s->status.why, sizeof(s->status.why), "%s", why);
    pthread_mutex_unlock(&s->job_mu);
    bool done = run_all(api, started);
    if (done && api->cases != NULL) {
        struct risk_case_mark mark = {.at_us = started, .row = seq};
        cf_best_effort(risk_cases_mark_set(api->cases, API_SCREENING_MARK, &mark, started));
    }
    char counts[96];
    pthread_mutex_lock(&s->job_mu);
    s->status.running = false;
    s->status.aborted = !done;
    s->status.finished_at_us = api_pay_now_us();
    snprintf(counts, sizeof(counts), "%" PRIu64 " screened, %" PRIu64 " not clear",
             s->status.screened, s->status.hits);
    pthread_mutex_unlock(&s->job_mu);
    cf_log(LOG_INFO, done ? "screening: re-screening done" : "screening: re-screening stopped",
           "why", why, "counts", counts, NULL);
}

static void *job_main(void *arg)
{
    struct api *api = arg;
    struct api_screening *s = api->screening;
    pthread_mutex_lock(&s->job_mu);
    while (!s->stopping) {
        if (s->requested) {
            char why[WHY_BYTES];
            snprintf(why, sizeof(why), "%s", s->requested_why);
            s->requested = false;
            pthread_mutex_unlock(&s->job_mu);
            run_job(api, why);
            pthread_mutex_lock(&s->job_mu);
            continue;
        }
        struct timespec until = cf_deadline_after_ms(API_SCREENING_POLL_MS);
        int rc = 0;
        while (!s->stopping && !s->requested && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&s->job_cond, &s->job_mu, &until);
        if (rc != ETIMEDOUT || s->stopping)
            continue;
        pthread_mutex_unlock(&s->job_mu);
        enum cf_err err = holder_rebuild(api, NULL); /* lists loaded by another server */
        if (err != CF_OK)
            cf_log(LOG_WARN, "screening: lists refresh failed", "error", cf_err_code(err), NULL);
        pthread_mutex_lock(&s->job_mu);
    }
    pthread_mutex_unlock(&s->job_mu);
    return NULL;
}

/* Start and stop ----------------------------------------------------------------------------------
 */

static void holder_free(struct api_screening *s)
{
    if (s->active != NULL) {
        CF_ASSERT(s->active->refs == 1 && s->retired == NULL); /* every reader released */
        set_destroy(s->active->set);
        free(s->active);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->rebuild_mu);
    pthread_mutex_destroy(&s->job_mu);
    pthread_cond_destroy(&s->job_cond);
    free(s);
}

/* Queues a run when the last completed one screened against an older sequence. */
static enum cf_err resume_check(struct api *api)
{
    if (api->cases == NULL || api->risk_lists == NULL)
        return CF_OK;
    struct risk_case_mark mark;
    uint64_t seq = 0;
    enum cf_err err = risk_cases_mark_get(api->cases, API_SCREENING_MARK, &mark);
    if (err == CF_OK)
        err = risk_lists_seq(api->risk_lists, &seq);
    if (err == CF_OK && seq > mark.row)
        api_risk_screening_rescreen(api, "resume");
    return err;
}

enum cf_err api_risk_screening_start(struct api *api, int threshold)
{
    CF_ASSERT(api != NULL && api->screening == NULL);
    CF_ASSERT(threshold >= RISK_LISTS_THRESHOLD_MIN && threshold <= SCREEN_SCORE_MAX);
    struct api_screening *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CF_ERR_NOMEM;
    s->threshold = threshold;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->rebuild_mu, NULL);
    pthread_mutex_init(&s->job_mu, NULL);
    pthread_cond_init(&s->job_cond, NULL);
    struct screen_set *empty = calloc(1, sizeof(*empty));
    if (empty == NULL || (s->active = ref_new(empty)) == NULL) {
        free(empty);
        holder_free(s);
        return CF_ERR_NOMEM;
    }
    api->screening = s;
    enum cf_err err = holder_rebuild(api, NULL);
    if (err == CF_OK)
        err = resume_check(api);
    if (err == CF_OK) {
        s->thread_started = pthread_create(&s->thread, NULL, job_main, api) == 0;
        if (!s->thread_started)
            err = CF_ERR_NOMEM;
    }
    if (err != CF_OK) {
        api->screening = NULL;
        holder_free(s);
    }
    CF_ASSERT(err != CF_OK || api->screening->active != NULL);
    return err;
}

void api_risk_screening_stop(struct api *api)
{
    if (api == NULL || api->screening == NULL)
        return;
    struct api_screening *s = api->screening;
    if (s->thread_started) {
        pthread_mutex_lock(&s->job_mu);
        s->stopping = true;
        pthread_cond_signal(&s->job_cond);
        pthread_mutex_unlock(&s->job_mu);
        pthread_join(s->thread, NULL);
    }
    api->screening = NULL;
    holder_free(s);
}

/* JSON ---------------------------------------------------------------------------------------- */

static json_t *version_json(uint64_t v)
{
    char text[20];
    snprintf(text, sizeof(text), "%016" PRIx64, v);
    return json_string(text);
}

static const char *agreement_name(uint8_t a)
{
    return a == WATCHLIST_AGREE ? "agree" : a == WATCHLIST_CONFLICT ? "conflict" : "unknown";
}

static json_t *list_json(const struct risk_list *l)
{
    json_t *o =
        json_pack("{s:s,s:s,s:I,s:o,s:I,s:I,s:s,s:s,s:o,s:b}", "name", l->name, "kind",
                  risk_lists_kind_name(l->kind), "entries", (json_int_t)l->entries, "version",
                  version_json(l->version), "content_bytes", (json_int_t)l->content_bytes,
                  "alt_bytes", (json_int_t)l->alt_bytes, "load_id", l->load_id, "loaded_by",
                  l->loaded_by, "loaded_at", api_risk_time_json(l->loaded_at_us), "changed", l->changed);
    return o;
}

static json_t *hit_json(const struct risk_screen_hit *h)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:s,s:s}", "list", h->list, "entry_id", h->entry_id,
                     "ref", h->ref, "matched_name", h->matched_name, "score", h->score,
                     "name_score", h->name_score, "date_of_birth", agreement_name(h->dob),
                     "country", agreement_name(h->country));
}

static json_t *versions_json(const struct risk_list_version *v, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n && arr != NULL; i++)
        json_array_append_new(
            arr, json_pack("{s:s,s:o}", "name", v[i].name, "version", version_json(v[i].version)));
    return arr;
}

static json_t *block_json(const struct risk_screen_block *b)
{
    return json_pack("{s:b,s:o,s:o,s:o}", "blocked", b->blocked, "event_id",
                     b->blocked ? json_string(b->event_id) : json_null(), "case_id",
                     b->blocked && b->case_id[0] != '\0' ? json_string(b->case_id) : json_null(),
                     "since", api_risk_time_json(b->blocked ? b->since_us : 0));
}

static json_t *event_json(const struct risk_screen_event *e)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:o}", "id", e->id, "type", risk_lists_event_name(e->kind),
                          "by", e->by, "at", api_risk_time_json(e->at_us));
    if (o != NULL && e->kind == RISK_LISTS_EVENT_CLEAR) {
        json_object_set_new(o, "block_id", json_string(e->block_id));
        json_object_set_new(o, "case_id",
                            e->case_id[0] != '\0' ? json_string(e->case_id) : json_null());
        json_object_set_new(o, "reason", json_string(e->reason));
    }
    return o;
}

/* The set in memory: its sequence and lists. */
static json_t *active_json(struct api_screening *s)
{
    const struct screen_set *set = set_acquire(s);
    json_t *lists = json_array();
    for (size_t i = 0; i < set->n && lists != NULL; i++)
        json_array_append_new(lists,
                              json_pack("{s:s,s:s,s:o,s:I}", "name", set->lists[i].name, "kind",
                                        risk_lists_kind_name(set->lists[i].kind), "version",
                                        version_json(set->lists[i].version), "entries",
                                        (json_int_t)watchlist_entries_n(set->lists[i].wl)));
    json_t *o = json_pack("{s:I,s:o}", "seq", (json_int_t)set->seq, "lists", lists);
    set_release(s, set);
    return o;
}

static json_t *status_json(struct api_screening *s)
{
    pthread_mutex_lock(&s->job_mu);
    struct run_status st = s->status;
    st.queued = s->requested;
    pthread_mutex_unlock(&s->job_mu);
    json_t *run = json_pack(
        "{s:s,s:b,s:o,s:o,s:o,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "state",
        st.running ? "running" : "idle", "queued", st.queued, "why",
        st.why[0] != '\0' ? json_string(st.why) : json_null(), "started_at",
        api_risk_time_json(st.started_at_us), "finished_at", api_risk_time_json(st.finished_at_us), "aborted",
        st.aborted, "lists_seq", (json_int_t)st.lists_seq, "screened", (json_int_t)st.screened,
        "not_clear", (json_int_t)st.hits, "blocked", (json_int_t)st.blocked, "skipped",
        (json_int_t)st.skipped, "errors", (json_int_t)st.errors, "runs", (json_int_t)st.runs);
    return json_pack("{s:o,s:i,s:o}", "rescreening", run, "threshold", s->threshold, "active",
                     active_json(s));
}

/* Routes: lists ------------------------------------------------------------------------------- */

/* The lists body: strings point into root, alive until it is freed. */
struct load_body {
    char name[RISK_LISTS_NAME_BYTES_MAX];
    uint8_t kind;
    const char *content, *alt;
    size_t content_len, alt_len;
};

static enum cf_err load_fields(json_t *root, struct load_body *b, const char **detail)
{
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_string(root, "name", true, RISK_LISTS_NAME_BYTES_MAX, &s, &n);
    if (err == CF_OK && n < RISK_LISTS_NAME_BYTES_MAX)
        snprintf(b->name, sizeof(b->name), "%.*s", (int)n, s);
    if (err != CF_OK || !risk_lists_name_valid(b->name)) {
        *detail = "name: 1 to 24 of a-z, 0-9 and _";
        return err == CF_ERR_MISSING_FIELD ? err : CF_ERR_INVALID_FIELD;
    }
    s = NULL;
    if ((err = api_json_string(root, "kind", true, 16, &s, NULL)) != CF_OK ||
        (b->kind = risk_lists_kind_parse(s)) == 0) {
        *detail = "kind: sdn or simple";
        return err == CF_ERR_MISSING_FIELD ? err : CF_ERR_INVALID_FIELD;
    }
    if ((err = api_json_string(root, "content", true, API_SCREENING_LIST_BODY_BYTES_MAX,
                               &b->content, &b->content_len)) != CF_OK) {
        *detail = "content: the list's file as text";
        return err;
    }
    if ((err = api_json_string(root, "alt_content", false, API_SCREENING_LIST_BODY_BYTES_MAX,
                               &b->alt, &b->alt_len)) != CF_OK) {
        *detail = "alt_content: the SDN aliases file as text";
        return err;
    }
    if (b->alt != NULL && b->kind != RISK_LISTS_SDN) {
        *detail = "alt_content: only with kind sdn";
        return CF_ERR_INVALID_FIELD;
    }
    return CF_OK;
}

/* Parses the body's list; *detail names the bad line ("content: line 12 is malformed"). */
static enum cf_err load_parse(struct http_request *req, const struct load_body *b,
                              struct watchlist **out, const char **detail)
{
    size_t bad_line = 0;
    bool in_alt = false;
    enum cf_err err = list_parse(b->kind, b->name, b->content, b->content_len, b->alt, b->alt_len,
                                 out, &bad_line, &in_alt);
    if (err == CF_ERR_INVALID_FIELD) {
        char *d = arena_alloc(req->arena, 96);
        if (d != NULL)
            snprintf(d, 96, "%s: line %zu is malformed or over a limit",
                     in_alt ? "alt_content" : "content", bad_line);
        *detail = d;
    } else if (err == CF_ERR_PAYLOAD_TOO_LARGE) {
        *detail = "content: too large";
    }
    return err;
}

static void load_reply(struct http_request *req, struct http_response *resp,
                       const struct risk_list *l, bool queued)
{
    json_t *o = list_json(l);
    if (o == NULL) {
        api_problem(req, resp, CF_ERR_NOMEM, NULL);
        return;
    }
    json_object_set_new(o, "rescreen_queued", json_boolean(queued));
    api_reply_object(req, resp, 201, o);
}

/* Stores a parsed list, audits it, makes it active and queues the re-screening. */
static enum cf_err load_apply(struct http_request *req, const struct load_body *b,
                              const struct risk_lists_idem *idem, struct watchlist *wl,
                              struct risk_list *out, bool *queued)
{
    struct api *api = req->app;
    struct risk_list_load in = {.name = b->name,
                                .kind = b->kind,
                                .content = b->content,
                                .content_len = b->content_len,
                                .alt = b->alt,
                                .alt_len = b->alt_len,
                                .version = watchlist_version(wl),
                                .entries = (uint32_t)watchlist_entries_n(wl)};
    bool replay = false;
    struct given_list given = {.name = b->name, .version = in.version, .wl = wl};
    enum cf_err err =
        risk_lists_put(api->risk_lists, &in, api_actor(req), idem, api_pay_now_us(), out, &replay);
    if (err != CF_OK) {
        watchlist_destroy(wl);
        return err;
    }
    if (!replay) {
        struct identity_ctx ctx;
        char detail[DETAIL_BYTES];
        api_ctx(req, &ctx);
        snprintf(detail, sizeof(detail),
                 "load %s kind %s version %016" PRIx64 " entries %" PRIu32 " changed %s",
                 out->load_id, risk_lists_kind_name(out->kind), out->version, out->entries,
                 out->changed ? "yes" : "no");
        cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req), "risk.list_load",
                                      out->name, "ok", detail));
    }
    enum cf_err rebuilt = holder_rebuild(api, &given); /* the load stands; the poller retries */
    if (rebuilt != CF_OK)
        cf_log(LOG_WARN, "screening: lists rebuild failed", "error", cf_err_code(rebuilt), NULL);
    *queued = !replay && out->changed;
    if (*queued)
        api_risk_screening_rescreen(api, "load");
    return CF_OK;
}

static void lists_load_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {"name", "kind", "content", "alt_content", NULL};
    struct api *api = req->app;
    char key[PAY_IDEM_BYTES_MAX];
    struct risk_lists_idem idem = {.key = key};
    struct load_body b;
    memset(&b, 0, sizeof(b));
    json_t *root = NULL;
    const char *detail = NULL;
    struct watchlist *wl = NULL;
    struct risk_list out;
    bool queued = false, replayed = false;
    enum cf_err err = api->risk_lists == NULL || api->screening == NULL
                          ? CF_ERR_CONFIG
                          : api_pay_idem_read(req, key, idem.request_hash);
    if (err == CF_OK && (err = api_json_object(req, &root, &detail)) == CF_OK &&
        (err = api_json_fields(root, fields, &detail)) == CF_OK)
        err = load_fields(root, &b, &detail);
    detail = api_detail_keep(req, detail); /* it may point into root */
    if (err == CF_OK) {                    /* the key's load again, answered without parsing */
        err = risk_lists_load_by_idem(api->risk_lists, &idem, b.name, &out);
        replayed = err == CF_OK;
        err = err == CF_ERR_NOT_FOUND ? CF_OK : err;
    }
    if (err == CF_OK && !replayed)
        err = load_parse(req, &b, &wl, &detail);
    if (err == CF_OK && !replayed)
        err = load_apply(req, &b, &idem, wl, &out, &queued);
    if (err == CF_ERR_CONFLICT)
        detail = "at most 16 lists";
    json_decref(root);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    load_reply(req, resp, &out, queued);
}

enum http_action api_risk_lists_load(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, lists_load_run);
}

static void lists_list_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct risk_list *lists = arena_calloc(req->arena, RISK_LISTS_MAX, sizeof(*lists));
    size_t n = 0;
    uint64_t seq = 0;
    enum cf_err err = lists == NULL ? CF_ERR_NOMEM
                      : api->risk_lists == NULL || api->screening == NULL
                          ? CF_ERR_CONFIG
                          : risk_lists_all(api->risk_lists, lists, RISK_LISTS_MAX, &n);
    if (err == CF_OK)
        err = risk_lists_seq(api->risk_lists, &seq);
    if (err != CF_OK) {
        api_problem(req, resp, err, NULL);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n && data != NULL; i++) {
        json_t *l = list_json(&lists[i]);
        json_object_del(l, "changed"); /* a load's fact, not the list's */
        json_array_append_new(data, l);
    }
    api_reply_object(req, resp, 200,
                     json_pack("{s:o,s:I,s:o}", "data", data, "seq", (json_int_t)seq, "active",
                               active_json(api->screening)));
}

enum http_action api_risk_lists_list(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, lists_list_run);
}

/* Routes: re-screening --------------------------------------------------------------------------
 */

static void screening_run_run(struct http_request *req, struct http_response *resp)
{
    static const char *const fields[] = {NULL};
    struct api *api = req->app;
    json_t *root = NULL;
    const char *detail = NULL;
    enum cf_err err = api->risk_lists == NULL || api->screening == NULL ? CF_ERR_CONFIG : CF_OK;
    if (err == CF_OK && req->body_len > 0 && /* no body, or {} */
        (err = api_json_object(req, &root, &detail)) == CF_OK)
        err = api_json_fields(root, fields, &detail);
    detail = api_detail_keep(req, detail); /* it may point into root */
    json_decref(root);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    api_risk_screening_rescreen(api, "manual");
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req), "risk.screening_run",
                                  "screening", "ok", NULL));
    api_reply_object(req, resp, 202, status_json(api->screening));
}

enum http_action api_risk_screening_run(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, screening_run_run);
}

static void screening_status_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    if (api->screening == NULL) {
        api_problem(req, resp, CF_ERR_CONFIG, NULL);
        return;
    }
    api_reply_object(req, resp, 200, status_json(api->screening));
}

enum http_action api_risk_screening_status(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, screening_status_run);
}

/* Routes: a party ------------------------------------------------------------------------------ */

/* CF_OK when party is a customer (closed ones too) or a merchant; else CF_ERR_NOT_FOUND. */
static enum cf_err party_exists(struct api *api, const char *party)
{
    if (!risk_lists_party_valid(party))
        return CF_ERR_NOT_FOUND;
    if (strncmp(party, ID_PREFIX_USER, strlen(ID_PREFIX_USER)) == 0) {
        struct identity_profile p;
        enum cf_err err = identity_profile_get(api->identity, party, &p);
        bool customer = err == CF_OK && p.role == IDENTITY_CUSTOMER;
        hash_wipe(&p, sizeof(p));
        return err != CF_OK ? err : customer ? CF_OK : CF_ERR_NOT_FOUND;
    }
    struct identity_merchant im;
    return identity_merchant_get(api->identity, party, &im);
}

/* A party's view: its last screening and hits (when screened) and its events. */
struct party_view {
    bool screened;
    struct risk_screening s;
    struct risk_screen_hit hits[RISK_LISTS_HITS_MAX];
    struct risk_screen_block block;
    struct risk_screen_event events[API_SCREENING_EVENTS_SHOWN];
    size_t events_n;
};

static enum cf_err view_read(struct api *api, const char *party, struct party_view *v)
{
    enum cf_err err = party_exists(api, party);
    if (err == CF_OK) {
        err = risk_lists_screening_get(api->risk_lists, party, &v->s, v->hits, RISK_LISTS_HITS_MAX,
                                       &v->block);
        v->screened = err == CF_OK;
        err = err == CF_ERR_NOT_FOUND ? CF_OK : err;
    }
    if (err == CF_OK)
        err = risk_lists_events(api->risk_lists, party, v->events, API_SCREENING_EVENTS_SHOWN,
                                &v->events_n);
    return err;
}

static json_t *view_json(const char *party, const struct party_view *v)
{
    json_t *screening = json_null(), *hits = json_array(), *events = json_array();
    for (size_t i = 0; v->screened && i < v->s.hits_n && hits != NULL; i++)
        json_array_append_new(hits, hit_json(&v->hits[i]));
    for (size_t i = 0; i < v->events_n && events != NULL; i++)
        json_array_append_new(events, event_json(&v->events[i]));
    if (v->screened)
        screening = json_pack(
            "{s:s,s:s,s:o,s:o,s:I,s:I,s:I,s:o}", "outcome", risk_lists_outcome_name(v->s.outcome),
            "trigger", v->s.trigger, "at", api_risk_time_json(v->s.at_us), "lists",
            versions_json(v->s.lists, v->s.lists_n), "names", (json_int_t)v->s.names_n,
            "unscreenable", (json_int_t)v->s.unscreenable_n, "hits_total",
            (json_int_t)v->s.hits_total, "hits", hits);
    else
        json_decref(hits);
    struct risk_screen_block none = {0};
    return json_pack("{s:s,s:o,s:o,s:o}", "party", party, "screening", screening, "block",
                     block_json(v->screened ? &v->block : &none), "history", events);
}

static void party_screening_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *party = req->params[0];
    struct party_view *v = calloc(1, sizeof(*v));
    enum cf_err err = v == NULL                 ? CF_ERR_NOMEM
                      : api->risk_lists == NULL ? CF_ERR_CONFIG
                                                : view_read(api, party, v);
    if (err == CF_OK) {
        struct identity_ctx ctx;
        api_ctx(req, &ctx);
        cf_best_effort(identity_audit_queue(api->identity, &ctx, api_actor(req),
                                            "staff.risk.screening_view", party, "ok", NULL));
    }
    json_t *o = err == CF_OK ? view_json(party, v) : NULL;
    if (v != NULL)
        hash_wipe(v, sizeof(*v)); /* reasons */
    free(v);
    api_risk_object_reply(req, resp, err, NULL, 200, o);
}

enum http_action api_risk_party_screening(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, party_screening_run);
}

/* {reason}: copied into the request's arena. */
static enum cf_err clear_decode(struct http_request *req, const char **reason, const char **detail)
{
    static const char *const fields[] = {"reason", NULL};
    json_t *root = NULL;
    const char *s = NULL;
    size_t n = 0;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, detail);
    if (err == CF_OK && (err = api_json_string(root, "reason", true,
                                               RISK_LISTS_REASON_BYTES_MAX - 1, &s, &n)) != CF_OK)
        *detail = "reason: 1 to 500 characters";
    if (err == CF_OK && (*reason = arena_strndup(req->arena, s, n)) == NULL)
        err = CF_ERR_NOMEM;
    if (err == CF_OK && !risk_lists_reason_valid(*reason, detail))
        err = CF_ERR_INVALID_FIELD;
    *detail = api_detail_keep(req, *detail); /* it may point into root */
    json_decref(root);
    return err;
}

static void party_clear_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    const char *party = req->params[0], *reason = NULL, *detail = NULL;
    char key[PAY_IDEM_BYTES_MAX];
    struct risk_lists_idem idem = {.key = key};
    struct risk_screen_event *ev = arena_calloc(req->arena, 1, sizeof(*ev));
    bool replay = false;
    enum cf_err err = ev == NULL                ? CF_ERR_NOMEM
                      : api->risk_lists == NULL ? CF_ERR_CONFIG
                                                : api_pay_idem_read(req, key, idem.request_hash);
    if (err == CF_OK)
        err = clear_decode(req, &reason, &detail);
    if (err == CF_OK)
        err = party_exists(api, party);
    if (err == CF_OK) {
        err = risk_lists_block_clear(api->risk_lists, party, reason, api_actor(req), NULL, &idem,
                                     api_pay_now_us(), ev, &replay);
        if (err == CF_ERR_NOT_FOUND) {
            err = CF_ERR_CONFLICT;
            detail = "the party is not blocked";
        }
    }
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    if (err == CF_OK && !replay)
        clear_audit(api, &ctx, api_actor(req), ev);
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    api_reply_object(
        req, resp, 200,
        json_pack("{s:s,s:b,s:o}", "party", party, "blocked", false, "clear", event_json(ev)));
    hash_wipe(ev, sizeof(*ev));
}

enum http_action api_risk_party_screening_clear(struct http_request *req,
                                                struct http_response *resp)
{
    return api_offload(req, resp, party_clear_run);
}

/* Routes: ad hoc ------------------------------------------------------------------------------- */

/* {name, date_of_birth?, country?}: *p filled (personal data: the caller wipes it). */
static enum cf_err adhoc_decode(struct http_request *req, struct party_name *p, const char **detail)
{
    static const char *const fields[] = {"name", "date_of_birth", "country", NULL};
    json_t *root = NULL;
    const char *name = NULL, *dob = NULL, *country = NULL;
    size_t name_len = 0;
    enum cf_err err = api_json_object(req, &root, detail);
    if (err == CF_OK)
        err = api_json_fields(root, fields, detail);
    if (err == CF_OK && (err = api_json_string(root, "name", true, SCREEN_NAME_BYTES_MAX, &name,
                                               &name_len)) != CF_OK)
        *detail = "name: 1 to 512 bytes";
    if (err == CF_OK &&
        (err = api_json_string(root, "date_of_birth", false, 10, &dob, NULL)) != CF_OK)
        *detail = "date_of_birth: YYYY, YYYY-MM or YYYY-MM-DD";
    if (err == CF_OK && (err = api_json_string(root, "country", false, TEXT_FIELD_BYTES_MAX - 1,
                                               &country, NULL)) != CF_OK)
        *detail = "country: at most 127 bytes";
    if (err == CF_OK && name_len == 0) {
        err = CF_ERR_INVALID_FIELD;
        *detail = "name: 1 to 512 bytes";
    }
    if (err == CF_OK && dob != NULL && !dob_form_valid(dob)) {
        err = CF_ERR_INVALID_FIELD;
        *detail = "date_of_birth: YYYY, YYYY-MM or YYYY-MM-DD";
    }
    if (err == CF_OK) {
        memcpy(p->text, name, name_len);
        p->text[name_len] = '\0';
        p->len = name_len;
        snprintf(p->dob, sizeof(p->dob), "%s", dob != NULL ? dob : "");
        text_clean(p->country, sizeof(p->country), country != NULL ? country : "");
    }
    *detail = api_detail_keep(req, *detail); /* it may point into root */
    json_decref(root);
    return err;
}

/* One ad-hoc hit with its entry's facts (the set held). */
static json_t *adhoc_hit_json(const struct screen_set *set, const struct merged_hit *m)
{
    const struct screen_list *sl = &set->lists[m->list];
    struct watchlist_entry_view e;
    watchlist_entry_get(sl->wl, m->h.entry, &e);
    static const char *const types[] = {"", "individual", "entity", "vessel", "aircraft"};
    char id[RISK_LISTS_ENTRY_BYTES_MAX], ref[RISK_LISTS_REF_BYTES_MAX];
    char dob[WATCHLIST_SHORT_TEXT_BYTES_MAX], country[WATCHLIST_SHORT_TEXT_BYTES_MAX];
    char program[WATCHLIST_SHORT_TEXT_BYTES_MAX * 4];
    text_clean(id, sizeof(id), e.id);
    risk_lists_hit_ref(sl->name, id, ref);
    text_clean(dob, sizeof(dob), e.dob);
    text_clean(country, sizeof(country), e.country);
    text_clean(program, sizeof(program), e.program);
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:s,s:s,s:s,s:s,s:s,s:s}", "list", sl->name, "entry_id", id,
        "ref", ref, "name", e.name, "matched_name",
        watchlist_name_get(sl->wl, m->h.entry, m->h.name), "score", m->h.score, "name_score",
        m->h.name_score, "type", e.type < sizeof(types) / sizeof(types[0]) ? types[e.type] : "",
        "entry_date_of_birth", dob, "entry_country", country, "program", program, "date_of_birth",
        agreement_name((uint8_t)m->h.dob), "country", agreement_name((uint8_t)m->h.country));
}

/* Screens p against the active set; *o_out gets the answer. */
static enum cf_err adhoc_screen(struct api *api, struct arena *arena, const struct party_name *p,
                                json_t **o_out, size_t *hits_out, const char **detail)
{
    struct api_screening *sc = api->screening;
    struct party_names *ns = calloc(1, sizeof(*ns));
    if (ns == NULL)
        return CF_ERR_NOMEM;
    ns->v[0] = *p;
    ns->n = 1;
    const struct screen_set *set = set_acquire(sc);
    size_t m_max = RISK_LISTS_MAX * QUERY_HITS_MAX, m_n = 0;
    struct merged_hit *m = arena_calloc(arena, m_max, sizeof(*m));
    struct risk_screening s;
    memset(&s, 0, sizeof(s));
    enum cf_err err =
        m == NULL ? CF_ERR_NOMEM : names_screen(set, sc->threshold, ns, arena, m, &m_n, m_max, &s);
    if (err == CF_OK && s.unscreenable_n > 0) {
        err = CF_ERR_INVALID_FIELD;
        *detail = "name: not a name the matcher can screen (at most 16 words of at most 64 "
                  "bytes, no control characters)";
    }
    json_t *hits = err == CF_OK ? json_array() : NULL;
    if (err == CF_OK)
        qsort(m, m_n, sizeof(*m), merged_order);
    for (size_t i = 0; hits != NULL && i < m_n && i < RISK_LISTS_HITS_MAX; i++)
        json_array_append_new(hits, adhoc_hit_json(set, &m[i]));
    if (err == CF_OK)
        *o_out = json_pack("{s:i,s:o,s:I}", "threshold", sc->threshold, "hits", hits, "hits_total",
                           (json_int_t)s.hits_total);
    set_release(sc, set);
    names_free(ns);
    *hits_out = m_n;
    return err;
}

static void adhoc_run(struct http_request *req, struct http_response *resp)
{
    struct api *api = req->app;
    struct party_name *p = calloc(1, sizeof(*p));
    const char *detail = NULL;
    json_t *o = NULL;
    size_t hits = 0;
    enum cf_err err = p == NULL                ? CF_ERR_NOMEM
                      : api->screening == NULL ? CF_ERR_CONFIG
                                               : adhoc_decode(req, p, &detail);
    if (err == CF_OK)
        err = adhoc_screen(api, req->arena, p, &o, &hits, &detail);
    if (p != NULL)
        hash_wipe(p, sizeof(*p));
    free(p);
    if (err == CF_OK && o == NULL)
        err = CF_ERR_NOMEM;
    if (err != CF_OK) {
        api_pay_problem_reply(req, resp, err, detail);
        return;
    }
    json_object_set_new(o, "active", active_json(api->screening));
    char d[32];
    snprintf(d, sizeof(d), "hits %zu", hits);
    struct identity_ctx ctx;
    api_ctx(req, &ctx);
    cf_best_effort(identity_audit(api->identity, &ctx, api_actor(req), "risk.screen_adhoc",
                                  "screening", "ok", d));
    api_reply_object(req, resp, 200, o);
}

enum http_action api_risk_screen_adhoc(struct http_request *req, struct http_response *resp)
{
    return api_offload(req, resp, adhoc_run);
}
