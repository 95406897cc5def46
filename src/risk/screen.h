/*
 * screen.h - name normalization and fuzzy name similarity for sanctions and watchlist screening.
 *
 * Pure functions over caller storage: no I/O, no global mutable state; any thread may call them.
 * Scores are not money: they are integers in thousandths, 0..SCREEN_SCORE_MAX (1000 = same
 * name). Every score is computed exactly in 64-bit integers from its rational definition and
 * rounded once, half up; there is no floating point.
 *
 * 1. Normalization (screen_name_normalize) turns a UTF-8 name into folded ASCII-ish tokens:
 *    a. refuse what is not a name: invalid UTF-8, C0/C1 control characters (NUL included), more
 *       than SCREEN_NAME_BYTES_MAX bytes (see screen_name_normalize for every refusal);
 *    b. transliterate Cyrillic (Russian, Ukrainian, Belarusian letters) to Latin letters with a
 *       simple one-to-one-or-few table (ж zh, х kh, ц ts, ч ch, ш sh, щ shch, ю yu, я ya, й i,
 *       ъ and ь dropped), before decomposition so that й and ё stay whole;
 *    c. decompose (Unicode NFKD, libunistring) and drop every mark (general category M) and
 *       format character (Cf): José -> Jose, Müller -> Muller, ligatures and full-width forms
 *       become plain letters;
 *    d. fold case (ASCII; other letters by their Unicode lower case) and map the Latin letters
 *       that do not decompose: ß ss, æ ae, ø o, ł l, đ d, ð d, þ th, œ oe, ı i, ħ h, ŧ t, ŋ n,
 *       ĸ k (upper case forms too);
 *    e. split on everything that is not a letter or a decimal digit: spaces, hyphens,
 *       apostrophes, commas, dots, symbols ("O'Brien" -> o brien, "HADDAD, Jean-Paul" ->
 *       hadad jean paul);
 *    f. drop noise tokens: honorifics and suffixes (mr, mrs, ms, miss, mx, dr, prof, sir, jr,
 *       sr). Particles are not tokens either, but they stay in the folded text between the
 *       tokens, so the joined spans below can still use them ("Abd al Rahman" has the tokens
 *       abd, rahman and the text abdalrahman; "de la Cruz" has the token cruz and the text
 *       delacruz, which meets "Delacruz"): the Arabic al, el, ul, bin, ibn, bint and the
 *       European de, del, della, der, den, di, da, das, dos, la, van, von. Not le, du or do,
 *       which are also Vietnamese and Chinese surnames. Vietnamese "Van" is a middle name and
 *       is dropped alike on both sides. When nothing but noise and particles is left, they are
 *       all kept as tokens (a name is never empty);
 *    g. fold each token (and particle) by these transliteration rules, in order:
 *       - one left-to-right pass: ph -> f, ck -> k, kh -> h, th -> t, q -> k, x -> ks,
 *         ou -> u, oo -> u, ee -> i, ae -> a, oe -> o, ue -> u (the last three also undo the
 *         German ä/ö/ü spellings: Mueller meets Müller);
 *       - y between two consonants -> i;
 *       - a final ei, ey or y -> i (Sergei/Sergey, Aly/Ali, Dmitriy);
 *       - a run of the same letter -> one letter (Mohammed -> mohamed, Hassan -> hasan).
 *       So Mohammed, Mohamed -> mohamed; Muhammad, Mohammad -> muhamad/mohamad; Yusuf, Yousef,
 *       Youssef -> yusuf, yusef; Alexander -> aleksander; Sergey, Sergei -> sergi.
 *    The rules are general spellings, never a table of particular names.
 *
 * 2. Span similarity (screen_span_similarity) is the larger of
 *    - Jaro-Winkler of the two folded strings (prefix scale 0.1, prefix up to 4 characters, the
 *      prefix bonus given only when the Jaro similarity is at least 0.7, as Winkler did), and
 *    - SCREEN_SCORE_MAX - SCREEN_SKELETON_PENALTY when both have the same consonant skeleton of
 *      at least SCREEN_SKELETON_CHARS_MIN characters. The skeleton is the first character
 *      followed by the others that are not vowels (a e i o u y): mohamed and muhamad are both
 *      mhmd, abdul and abdel both abdl. Arabic script does not write short vowels, so Latin
 *      spellings of one Arabic name differ mostly in their vowels; the penalty keeps such a
 *      match below an exact one, and the length floor keeps short skeletons (hsn: Hassan,
 *      Hussein, Hosni) from matching.
 *    Strings are compared byte by byte (non-Latin letters are kept as UTF-8 and match exactly).
 *
 * 3. Name score (screen_name_score) survives word order, missing middle names and joined or
 *    split tokens. A span is one token, or 2..SCREEN_SPAN_TOKENS_MAX adjacent tokens joined
 *    with the particles between them, or either of these with the particles just before it
 *    ("abdalrahman", "alrahman"); spans of more than one token or with a particle are
 *    composite. Pairs (query span, list span) where at most one side is composite are scored
 *    by span similarity, except that a pair with a composite side whose shorter span is less
 *    than SCREEN_COMPOSITE_RATIO_MIN thousandths of the longer is not a pair at all (else
 *    "nguyen" would take the whole of "nguyen thi huong" by its common prefix). Then, greedily,
 *    the best-scoring pair whose tokens are all still unused is taken, until one side has no
 *    token left (ties go to the pair listed first: single tokens before composites, then by
 *    token order). With w = the two spans' lengths in bytes times the weight of the pair, and U
 *    the penalty of the tokens no pair used:
 *
 *      score = round(1000 * sum(s * w) / (1000 * sum(w) + U))
 *
 *    where s is the pair's similarity, or 0 below SCREEN_TOKEN_SIM_MIN (unrelated names share
 *    letters and prefixes: Abu / Abdullahi is 0.833 by Jaro-Winkler, Hans / Handels 0.808, a
 *    one-letter token 0.75 against any word holding it). A pair weighs SCREEN_GENERIC_WEIGHT
 * thousandths when one of its spans is made of generic words only, else 1000; generic words are the
 * legal forms and trades that entity names share: company, co, corporation, corp, limited, ltd,
 * llc, inc, plc, international, intl, trading, holding, holdings, group, sa, gmbh, ag, fze, bank,
 *    shipping, exchange (so "Petronas International" is not "Petrolink International FZE").
 *
 *    U charges each unused token its length times its weight times SCREEN_UNMATCHED_FULL / 1000
 *    (2: as if it were a pair of its length that scored 0), except that when the pairs used two
 *    or more tokens of some side, the longest unused token is charged at
 *    SCREEN_UNMATCHED_PARTIAL instead: one
 *    missing middle name costs a little ("John Smith" / "John Michael Smith" 914), a second one
 *    costs in full, and one word of a longer name is far from it ("Smith" / "John Smith" 500).
 *    The score never exceeds its best pair's similarity: the watchlist's prefilter relies on
 *    that, and on screen_sig_bound.
 *
 * Errors: CF_ERR_INVALID_FIELD for a name that is not one (see screen_name_normalize),
 * CF_ERR_NOMEM when decomposition could not allocate. Outputs are untouched on failure. A length
 * or a score out of its documented range is a caller bug and aborts.
 */
#ifndef COFFER_RISK_SCREEN_H
#define COFFER_RISK_SCREEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/assert.h"
#include "core/error.h"

/* A name as given, in bytes of UTF-8. Long entity names on published lists run to a few hundred
 * bytes; a person's name is far shorter. */
#define SCREEN_NAME_BYTES_MAX 512

/* Tokens of one name once noise is dropped: the longest entity names on sanctions lists have
 * about a dozen words; the pair table stays small (SCREEN_SPANS_MAX squared). */
#define SCREEN_TOKENS_MAX 16

/* One token (or particle), in bytes, as given and once folded; longer is not a word of a name. */
#define SCREEN_TOKEN_BYTES_MAX 64

/* The folded text of a name: its tokens and particles back to back. */
#define SCREEN_FOLDED_BYTES_MAX 512

/* Adjacent tokens one span may join ("abd al rahman" is two tokens and a particle). */
#define SCREEN_SPAN_TOKENS_MAX 3

/* Spans of one name: each start token, each span length, with and without its particles. */
#define SCREEN_SPANS_MAX (SCREEN_TOKENS_MAX * SCREEN_SPAN_TOKENS_MAX * 2)

/* A score in thousandths: 1000 is the same folded name. */
#define SCREEN_SCORE_MAX 1000

/* Subtracted from a skeleton match, so mhmd = mhmd (Mohammed / Muhammad) scores 940, below an
 * exact spelling. */
#define SCREEN_SKELETON_PENALTY 60

/* Skeletons shorter than this say too little (hsn is Hassan, Hussein and Hosni). */
#define SCREEN_SKELETON_CHARS_MIN 4

/* A pair of spans below this similarity counts as 0 in a name score. Measured on the variants:
 * unrelated tokens reach 0.75..0.84 by Jaro-Winkler (Abu / Abdullahi 0.833), spelling variants
 * 0.85 and up (Yusuf / Yusef 0.907) or share a skeleton (Mohamed / Muhamad 0.829, as skeleton
 * 0.940). A cost: Omar / Umar (0.833) counts as different words. */
#define SCREEN_TOKEN_SIM_MIN 850

/* A composite pair needs its shorter span at least this many thousandths of the longer. */
#define SCREEN_COMPOSITE_RATIO_MIN 800

/* The weight (thousandths) of a pair or unused token made of generic entity words. */
#define SCREEN_GENERIC_WEIGHT 250

/* Weight, in thousandths of its length, of the longest token no pair used when the pairs used
 * two or more tokens of one side (a missing middle name), and of every other unused token. */
#define SCREEN_UNMATCHED_PARTIAL 250
#define SCREEN_UNMATCHED_FULL 2000

/*
 * The default hit threshold. Measured with bench_screen on tests/data/risk (164 variants that
 * must hit, 66 near misses that must not; the rules above were tuned on the same set, so real
 * names will do somewhat worse):
 *
 *   threshold   800    825    850    875    900    925    950
 *   precision   0.976  0.982  0.982  0.988  0.988  0.994  1.000
 *   recall      1.000  1.000  1.000  0.994  0.994  0.982  0.933
 *
 * 850 is the highest threshold that misses nothing: above it transliterated names with a missing
 * middle name fall out (a skeleton match scores 940 and a missing word costs 50..100), below it
 * names that share a surname and a similar first name come in. Screening favours recall: a false
 * hit costs an analyst a minute, a miss is a sanctions breach. It also equals
 * SCREEN_TOKEN_SIM_MIN, so the prefilter's floor leaves out exactly the pairs that count 0.
 */
#define SCREEN_THRESHOLD_DEFAULT 850

/* A normalized name: folded text with its tokens as byte ranges of it. */
struct screen_name {
    char text[SCREEN_FOLDED_BYTES_MAX];  /* not NUL-terminated */
    size_t text_len;                     /* 1..SCREEN_FOLDED_BYTES_MAX */
    size_t tokens_n;                     /* 1..SCREEN_TOKENS_MAX */
    uint16_t tok_off[SCREEN_TOKENS_MAX]; /* in text, increasing, not overlapping */
    uint16_t tok_len[SCREEN_TOKENS_MAX]; /* 1..SCREEN_TOKEN_BYTES_MAX */
    uint32_t generic;                    /* bit i set when token i is a generic entity word */
};

/* A span of a name: a byte range of its text and the tokens it covers. */
struct screen_span {
    uint16_t off, len;
    uint32_t tokens; /* bit i set when token i is covered */
    bool composite;  /* more than one token, or a particle */
};

/*
 * A cheap summary of a span for screen_sig_bound: length, letter counts, the first bytes and the
 * same for its consonant skeleton. Computed by screen_sig_compute.
 */
#define SCREEN_SIG_BUCKETS 32
struct screen_sig {
    uint8_t hist[SCREEN_SIG_BUCKETS]; /* a..z in 0..25, everything else in 26; saturates at 255 */
    uint16_t len, skel_len;
    uint8_t prefix[4];  /* zero-padded */
    uint32_t skel_hash; /* FNV-1a of the skeleton, folded to 32 bits */
    bool saturated;     /* some count reached 255 */
};

/*
 * A query span prepared to test many list spans against one floor: for each list span length b
 * (1..len_max) and common prefix l (0..4), the fewest shared letters that can reach the floor.
 */
struct screen_probe {
    struct screen_sig sig;
    int floor;
    size_t len_max;
    uint16_t m_min[5][SCREEN_FOLDED_BYTES_MAX + 1]; /* SCREEN_PROBE_NEVER when unreachable */
};
#define SCREEN_PROBE_NEVER UINT16_MAX

/*
 * Normalizes the UTF-8 name[0..len) (no NUL needed) as the header comment describes. On success
 * *out holds at least one token. CF_ERR_INVALID_FIELD when len is 0 or above
 * SCREEN_NAME_BYTES_MAX, the bytes are not UTF-8 or hold a control character, no letter or
 * digit is left, a token is longer than SCREEN_TOKEN_BYTES_MAX as given or once folded, the
 * folded text is longer than SCREEN_FOLDED_BYTES_MAX, or the tokens are more than
 * SCREEN_TOKENS_MAX (a caller should send such a name to a person rather than trim it: trimming
 * would let junk words hide a name).
 * CF_ERR_NOMEM when decomposition ran out of memory. *out is untouched on failure.
 */
CF_WARN_UNUSED enum cf_err screen_name_normalize(const char *name, size_t len,
                                                 struct screen_name *out);

/*
 * Jaro-Winkler similarity of a[0..a_len) and b[0..b_len), bytes, in thousandths rounded half up:
 * match window max(a_len, b_len) / 2 - 1, t half the matched characters out of order,
 * jaro = (m / a_len + m / b_len + (m - t) / m) / 3 (0 when m = 0), and, when jaro >= 0.7,
 * jw = jaro + l * 0.1 * (1 - jaro) with l the common prefix, at most 4. Both lengths must be in
 * 0..SCREEN_FOLDED_BYTES_MAX (else a caller bug); two empty strings score 0.
 */
int screen_jaro_winkler(const char *a, size_t a_len, const char *b, size_t b_len);

/*
 * The Jaro-Winkler formula above from its counts: lengths a_len and b_len (1 or more), m matches
 * (0..min), half_t matched characters out of order (0..m), common prefix l (0..4). Exposed so the
 * bound below is provably the same formula. Never decreases as m or l grows.
 */
int screen_jw_from_counts(size_t a_len, size_t b_len, size_t m, size_t half_t, size_t l);

/* The consonant skeleton of s[0..len) into out (at least len bytes); returns its length. */
size_t screen_skeleton(const char *s, size_t len, char *out);

/* Span similarity (header, point 2) of a[0..a_len) and b[0..b_len), each 1..FOLDED_BYTES_MAX. */
int screen_span_similarity(const char *a, size_t a_len, const char *b, size_t b_len);

/* The summary of s[0..len) (1..SCREEN_FOLDED_BYTES_MAX). */
void screen_sig_compute(const char *s, size_t len, struct screen_sig *out);

/*
 * An upper bound of screen_span_similarity of the two strings summarized by a and b: Jaro-Winkler
 * with m the number of bytes the two letter histograms share (or the shorter length when a count
 * saturated), no transposition, and the true common prefix; and the skeleton score when the
 * skeletons have the same length and hash. Sound because the formula never decreases in m, m can
 * never exceed the shared counts, and equal skeletons have equal lengths and hashes.
 */
int screen_sig_bound(const struct screen_sig *a, const struct screen_sig *b);

/* Prepares p for the span summarized by sig, floor 0..SCREEN_SCORE_MAX and list spans of at most
 * len_max bytes (1..SCREEN_FOLDED_BYTES_MAX). Costs about 5 * (len_max + sig->len) formula
 * evaluations. */
void screen_probe_init(struct screen_probe *p, const struct screen_sig *sig, int floor,
                       size_t len_max);

/* Exactly screen_sig_bound(&p->sig, s) >= p->floor, without a division; s->len <= p->len_max. */
bool screen_probe_passes(const struct screen_probe *p, const struct screen_sig *s);

/* The lengths lo..hi that a span of len bytes may pair with when a side is composite (the
 * SCREEN_COMPOSITE_RATIO_MIN rule of point 3). */
void screen_composite_lengths(size_t len, size_t *lo_out, size_t *hi_out);

/*
 * Writes the spans of name (header, point 3) into out[0..SCREEN_SPANS_MAX) and returns their
 * count: single tokens first in token order, then composites. The same enumeration is used by
 * screen_name_score and by the watchlist's index.
 */
size_t screen_name_spans(const struct screen_name *name, struct screen_span *out);

/* The name score (header, point 3) of a query against a list name, 0..SCREEN_SCORE_MAX. */
int screen_name_score(const struct screen_name *query, const struct screen_name *listed);

#endif
