/*
 * currency.c - the ISO 4217 currency table (static, sorted by code) and the registry of
 * operator-defined assets (points, miles, vouchers) that start-up adds to it.
 *
 * The ISO table is list one of ISO 4217 as maintained by SIX, as of amendment 179 (in force from
 * 2025-05-12): every currency and fund code that has a minor unit. Left out on purpose: codes
 * whose minor unit is "N.A." (precious metals XAU XAG XPD XPT, XDR, XSU, XUA, the bond-market
 * units XBA..XBD, and XTS and XXX) and codes moved to the historic list (ANG -> XCG on
 * 2025-03-31, CUC on 2025-02, HRK, SLL, ZWL). BGN is kept: it left list one only on 2026-01-01
 * (amendment 180, Bulgaria joined the euro) and balances held in it must stay readable.
 * To amend: edit a row and keep the rows sorted by code; the unit tests check order, uniqueness
 * and the entry count (ISO_ENTRIES_EXPECTED in test_currency.c), so update that too.
 */
#include "money/currency.h"

#include <string.h>

#include "money/money.h"

/* ISO 4217 alphabetic codes are exactly three letters. */
#define ISO_CODE_LEN 3

/* Sorted by code (strcmp order) so currency_find can binary search. {code, scale, numeric}. */
static const struct currency iso_currencies[] = {
    {"AED", 2, 784, false}, /* UAE Dirham */
    {"AFN", 2, 971, false}, /* Afghani */
    {"ALL", 2, 8, false},   /* Lek */
    {"AMD", 2, 51, false},  /* Armenian Dram */
    {"AOA", 2, 973, false}, /* Kwanza */
    {"ARS", 2, 32, false},  /* Argentine Peso */
    {"AUD", 2, 36, false},  /* Australian Dollar */
    {"AWG", 2, 533, false}, /* Aruban Florin */
    {"AZN", 2, 944, false}, /* Azerbaijan Manat */
    {"BAM", 2, 977, false}, /* Convertible Mark */
    {"BBD", 2, 52, false},  /* Barbados Dollar */
    {"BDT", 2, 50, false},  /* Taka */
    {"BGN", 2, 975, false}, /* Bulgarian Lev */
    {"BHD", 3, 48, false},  /* Bahraini Dinar */
    {"BIF", 0, 108, false}, /* Burundi Franc */
    {"BMD", 2, 60, false},  /* Bermudian Dollar */
    {"BND", 2, 96, false},  /* Brunei Dollar */
    {"BOB", 2, 68, false},  /* Boliviano */
    {"BOV", 2, 984, false}, /* Mvdol (fund) */
    {"BRL", 2, 986, false}, /* Brazilian Real */
    {"BSD", 2, 44, false},  /* Bahamian Dollar */
    {"BTN", 2, 64, false},  /* Ngultrum */
    {"BWP", 2, 72, false},  /* Pula */
    {"BYN", 2, 933, false}, /* Belarusian Ruble */
    {"BZD", 2, 84, false},  /* Belize Dollar */
    {"CAD", 2, 124, false}, /* Canadian Dollar */
    {"CDF", 2, 976, false}, /* Congolese Franc */
    {"CHE", 2, 947, false}, /* WIR Euro (fund) */
    {"CHF", 2, 756, false}, /* Swiss Franc */
    {"CHW", 2, 948, false}, /* WIR Franc (fund) */
    {"CLF", 4, 990, false}, /* Unidad de Fomento (fund) */
    {"CLP", 0, 152, false}, /* Chilean Peso */
    {"CNY", 2, 156, false}, /* Yuan Renminbi */
    {"COP", 2, 170, false}, /* Colombian Peso */
    {"COU", 2, 970, false}, /* Unidad de Valor Real (fund) */
    {"CRC", 2, 188, false}, /* Costa Rican Colon */
    {"CUP", 2, 192, false}, /* Cuban Peso */
    {"CVE", 2, 132, false}, /* Cabo Verde Escudo */
    {"CZK", 2, 203, false}, /* Czech Koruna */
    {"DJF", 0, 262, false}, /* Djibouti Franc */
    {"DKK", 2, 208, false}, /* Danish Krone */
    {"DOP", 2, 214, false}, /* Dominican Peso */
    {"DZD", 2, 12, false},  /* Algerian Dinar */
    {"EGP", 2, 818, false}, /* Egyptian Pound */
    {"ERN", 2, 232, false}, /* Nakfa */
    {"ETB", 2, 230, false}, /* Ethiopian Birr */
    {"EUR", 2, 978, false}, /* Euro */
    {"FJD", 2, 242, false}, /* Fiji Dollar */
    {"FKP", 2, 238, false}, /* Falkland Islands Pound */
    {"GBP", 2, 826, false}, /* Pound Sterling */
    {"GEL", 2, 981, false}, /* Lari */
    {"GHS", 2, 936, false}, /* Ghana Cedi */
    {"GIP", 2, 292, false}, /* Gibraltar Pound */
    {"GMD", 2, 270, false}, /* Dalasi */
    {"GNF", 0, 324, false}, /* Guinean Franc */
    {"GTQ", 2, 320, false}, /* Quetzal */
    {"GYD", 2, 328, false}, /* Guyana Dollar */
    {"HKD", 2, 344, false}, /* Hong Kong Dollar */
    {"HNL", 2, 340, false}, /* Lempira */
    {"HTG", 2, 332, false}, /* Gourde */
    {"HUF", 2, 348, false}, /* Forint */
    {"IDR", 2, 360, false}, /* Rupiah */
    {"ILS", 2, 376, false}, /* New Israeli Sheqel */
    {"INR", 2, 356, false}, /* Indian Rupee */
    {"IQD", 3, 368, false}, /* Iraqi Dinar */
    {"IRR", 2, 364, false}, /* Iranian Rial */
    {"ISK", 0, 352, false}, /* Iceland Krona */
    {"JMD", 2, 388, false}, /* Jamaican Dollar */
    {"JOD", 3, 400, false}, /* Jordanian Dinar */
    {"JPY", 0, 392, false}, /* Yen */
    {"KES", 2, 404, false}, /* Kenyan Shilling */
    {"KGS", 2, 417, false}, /* Som */
    {"KHR", 2, 116, false}, /* Riel */
    {"KMF", 0, 174, false}, /* Comorian Franc */
    {"KPW", 2, 408, false}, /* North Korean Won */
    {"KRW", 0, 410, false}, /* Won */
    {"KWD", 3, 414, false}, /* Kuwaiti Dinar */
    {"KYD", 2, 136, false}, /* Cayman Islands Dollar */
    {"KZT", 2, 398, false}, /* Tenge */
    {"LAK", 2, 418, false}, /* Lao Kip */
    {"LBP", 2, 422, false}, /* Lebanese Pound */
    {"LKR", 2, 144, false}, /* Sri Lanka Rupee */
    {"LRD", 2, 430, false}, /* Liberian Dollar */
    {"LSL", 2, 426, false}, /* Loti */
    {"LYD", 3, 434, false}, /* Libyan Dinar */
    {"MAD", 2, 504, false}, /* Moroccan Dirham */
    {"MDL", 2, 498, false}, /* Moldovan Leu */
    {"MGA", 2, 969, false}, /* Malagasy Ariary */
    {"MKD", 2, 807, false}, /* Denar */
    {"MMK", 2, 104, false}, /* Kyat */
    {"MNT", 2, 496, false}, /* Tugrik */
    {"MOP", 2, 446, false}, /* Pataca */
    {"MRU", 2, 929, false}, /* Ouguiya */
    {"MUR", 2, 480, false}, /* Mauritius Rupee */
    {"MVR", 2, 462, false}, /* Rufiyaa */
    {"MWK", 2, 454, false}, /* Malawi Kwacha */
    {"MXN", 2, 484, false}, /* Mexican Peso */
    {"MXV", 2, 979, false}, /* Mexican Unidad de Inversion (fund) */
    {"MYR", 2, 458, false}, /* Malaysian Ringgit */
    {"MZN", 2, 943, false}, /* Mozambique Metical */
    {"NAD", 2, 516, false}, /* Namibia Dollar */
    {"NGN", 2, 566, false}, /* Naira */
    {"NIO", 2, 558, false}, /* Cordoba Oro */
    {"NOK", 2, 578, false}, /* Norwegian Krone */
    {"NPR", 2, 524, false}, /* Nepalese Rupee */
    {"NZD", 2, 554, false}, /* New Zealand Dollar */
    {"OMR", 3, 512, false}, /* Rial Omani */
    {"PAB", 2, 590, false}, /* Balboa */
    {"PEN", 2, 604, false}, /* Sol */
    {"PGK", 2, 598, false}, /* Kina */
    {"PHP", 2, 608, false}, /* Philippine Peso */
    {"PKR", 2, 586, false}, /* Pakistan Rupee */
    {"PLN", 2, 985, false}, /* Zloty */
    {"PYG", 0, 600, false}, /* Guarani */
    {"QAR", 2, 634, false}, /* Qatari Rial */
    {"RON", 2, 946, false}, /* Romanian Leu */
    {"RSD", 2, 941, false}, /* Serbian Dinar */
    {"RUB", 2, 643, false}, /* Russian Ruble */
    {"RWF", 0, 646, false}, /* Rwanda Franc */
    {"SAR", 2, 682, false}, /* Saudi Riyal */
    {"SBD", 2, 90, false},  /* Solomon Islands Dollar */
    {"SCR", 2, 690, false}, /* Seychelles Rupee */
    {"SDG", 2, 938, false}, /* Sudanese Pound */
    {"SEK", 2, 752, false}, /* Swedish Krona */
    {"SGD", 2, 702, false}, /* Singapore Dollar */
    {"SHP", 2, 654, false}, /* Saint Helena Pound */
    {"SLE", 2, 925, false}, /* Leone */
    {"SOS", 2, 706, false}, /* Somali Shilling */
    {"SRD", 2, 968, false}, /* Surinam Dollar */
    {"SSP", 2, 728, false}, /* South Sudanese Pound */
    {"STN", 2, 930, false}, /* Dobra */
    {"SVC", 2, 222, false}, /* El Salvador Colon */
    {"SYP", 2, 760, false}, /* Syrian Pound */
    {"SZL", 2, 748, false}, /* Lilangeni */
    {"THB", 2, 764, false}, /* Baht */
    {"TJS", 2, 972, false}, /* Somoni */
    {"TMT", 2, 934, false}, /* Turkmenistan New Manat */
    {"TND", 3, 788, false}, /* Tunisian Dinar */
    {"TOP", 2, 776, false}, /* Pa'anga */
    {"TRY", 2, 949, false}, /* Turkish Lira */
    {"TTD", 2, 780, false}, /* Trinidad and Tobago Dollar */
    {"TWD", 2, 901, false}, /* New Taiwan Dollar */
    {"TZS", 2, 834, false}, /* Tanzanian Shilling */
    {"UAH", 2, 980, false}, /* Hryvnia */
    {"UGX", 0, 800, false}, /* Uganda Shilling */
    {"USD", 2, 840, false}, /* US Dollar */
    {"USN", 2, 997, false}, /* US Dollar next day (fund) */
    {"UYI", 0, 940, false}, /* Uruguay Peso en Unidades Indexadas (fund) */
    {"UYU", 2, 858, false}, /* Peso Uruguayo */
    {"UYW", 4, 927, false}, /* Unidad Previsional */
    {"UZS", 2, 860, false}, /* Uzbekistan Sum */
    {"VED", 2, 926, false}, /* Bolivar Soberano (digital) */
    {"VES", 2, 928, false}, /* Bolivar Soberano */
    {"VND", 0, 704, false}, /* Dong */
    {"VUV", 0, 548, false}, /* Vatu */
    {"WST", 2, 882, false}, /* Tala */
    {"XAD", 2, 396, false}, /* Arab Accounting Dinar (fund) */
    {"XAF", 0, 950, false}, /* CFA Franc BEAC */
    {"XCD", 2, 951, false}, /* East Caribbean Dollar */
    {"XCG", 2, 532, false}, /* Caribbean Guilder */
    {"XOF", 0, 952, false}, /* CFA Franc BCEAO */
    {"XPF", 0, 953, false}, /* CFP Franc */
    {"YER", 2, 886, false}, /* Yemeni Rial */
    {"ZAR", 2, 710, false}, /* Rand */
    {"ZMW", 2, 967, false}, /* Zambian Kwacha */
    {"ZWG", 2, 924, false}, /* Zimbabwe Gold */
};

#define ISO_CURRENCY_COUNT (sizeof(iso_currencies) / sizeof(iso_currencies[0]))

/* ISO 4217 codes without a minor unit: not usable as currencies here, yet still ISO codes, so
 * no operator asset may take them either. */
static const char iso_reserved_codes[][ISO_CODE_LEN + 1] = {
    "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX",
};

#define ISO_RESERVED_COUNT (sizeof(iso_reserved_codes) / sizeof(iso_reserved_codes[0]))

/* Operator assets, registered at start-up only; append-only until currency_assets_reset. */
static struct currency assets[MONEY_ASSETS_MAX];
static size_t asset_count;

/*
 * Compares code[0..len) with a NUL-terminated entry code as byte strings, in strcmp order. The
 * counted code may hold any byte, a NUL included (it comes from requests), and is never read
 * past len.
 */
static int code_compare(const char *code, size_t len, const char *entry_code)
{
    CF_ASSERT(len <= MONEY_CODE_BYTES_MAX);
    CF_ASSERT(entry_code != NULL);
    for (size_t i = 0; i < len; i++) {
        unsigned char entry_byte = (unsigned char)entry_code[i];
        if (entry_byte == '\0')
            return 1; /* code is longer than entry_code */
        unsigned char code_byte = (unsigned char)code[i];
        if (code_byte != entry_byte)
            return code_byte < entry_byte ? -1 : 1;
    }
    return entry_code[len] == '\0' ? 0 : -1; /* equal, or code is a proper prefix */
}

static const struct currency *iso_find(const char *code, size_t len)
{
    CF_ASSERT(code != NULL);
    CF_ASSERT(ISO_CURRENCY_COUNT > 0);
    if (len != ISO_CODE_LEN)
        return NULL;
    size_t low = 0;
    size_t high = ISO_CURRENCY_COUNT; /* search [low, high) */
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int cmp = code_compare(code, len, iso_currencies[mid].code);
        if (cmp == 0)
            return &iso_currencies[mid];
        if (cmp < 0)
            high = mid;
        else
            low = mid + 1;
    }
    return NULL;
}

static bool iso_reserved(const char *code, size_t len)
{
    CF_ASSERT(code != NULL);
    CF_ASSERT(len <= MONEY_CODE_BYTES_MAX);
    if (len != ISO_CODE_LEN)
        return false;
    for (size_t i = 0; i < ISO_RESERVED_COUNT; i++) {
        if (memcmp(code, iso_reserved_codes[i], ISO_CODE_LEN) == 0)
            return true;
    }
    return false;
}

static struct currency *asset_find(const char *code, size_t len)
{
    CF_ASSERT(code != NULL);
    CF_ASSERT(asset_count <= MONEY_ASSETS_MAX);
    for (size_t i = 0; i < asset_count; i++) {
        if (code_compare(code, len, assets[i].code) == 0)
            return &assets[i];
    }
    return NULL;
}

const struct currency *currency_find(const char *code, size_t len)
{
    CF_ASSERT(code != NULL || len == 0);
    if (len == 0 || len > MONEY_CODE_BYTES_MAX)
        return NULL;
    const struct currency *found = iso_find(code, len);
    if (found == NULL)
        found = asset_find(code, len);
    CF_ASSERT(found == NULL || strlen(found->code) == len);
    return found;
}

/* An asset code is 1..MONEY_CODE_BYTES_MAX characters of A-Z, 0-9 and '_'. */
static bool asset_code_valid(const char *code, size_t len)
{
    CF_ASSERT(code != NULL || len == 0);
    if (len == 0 || len > MONEY_CODE_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = code[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/* Registers code[0..len) with scale; the shared core of the two public entry points. */
static enum cf_err asset_register(const char *code, size_t len, int scale)
{
    CF_ASSERT(code != NULL);
    CF_ASSERT(asset_count <= MONEY_ASSETS_MAX);
    if (!asset_code_valid(code, len) || scale < 0 || scale > MONEY_SCALE_MAX)
        return CF_ERR_CONFIG;
    if (iso_find(code, len) != NULL || iso_reserved(code, len))
        return CF_ERR_CONFIG;
    const struct currency *existing = asset_find(code, len);
    if (existing != NULL)
        return existing->scale == scale ? CF_OK : CF_ERR_CONFIG;
    if (asset_count == MONEY_ASSETS_MAX)
        return CF_ERR_CONFIG;

    struct currency *asset = &assets[asset_count];
    memset(asset, 0, sizeof(*asset));
    memcpy(asset->code, code, len);
    asset->code[len] = '\0';
    asset->scale = scale;
    asset->numeric = 0;
    asset->is_asset = true;
    asset_count++;
    return CF_OK;
}

enum cf_err currency_asset_register(const char *code, int scale)
{
    CF_ASSERT(code != NULL);
    /* One byte past the longest valid code tells "too long" apart without reading further. */
    size_t len = strnlen(code, MONEY_CODE_BYTES_MAX + 1);
    CF_ASSERT(len <= MONEY_CODE_BYTES_MAX + 1);
    return asset_register(code, len, scale);
}

/* Registers one "CODE:SCALE" item of a spec; the scale is a single digit. */
static enum cf_err asset_spec_item_register(const char *item, size_t item_len)
{
    CF_ASSERT(item != NULL || item_len == 0);
    const char *colon = item_len > 0 ? memchr(item, ':', item_len) : NULL;
    if (colon == NULL)
        return CF_ERR_CONFIG;
    size_t code_len = (size_t)(colon - item);
    CF_ASSERT(code_len < item_len);
    if (item_len - code_len != 2) /* ':' and exactly one digit */
        return CF_ERR_CONFIG;
    char scale_char = colon[1];
    if (scale_char < '0' || scale_char > '9')
        return CF_ERR_CONFIG;
    return asset_register(item, code_len, scale_char - '0');
}

enum cf_err currency_assets_parse(const char *spec)
{
    CF_ASSERT(spec != NULL);
    size_t saved_count = asset_count;
    size_t spec_len = strlen(spec);
    size_t pos = 0;
    enum cf_err err = CF_OK;
    while (pos < spec_len && err == CF_OK) {
        const char *comma = memchr(spec + pos, ',', spec_len - pos);
        size_t item_end = comma != NULL ? (size_t)(comma - spec) : spec_len;
        err = asset_spec_item_register(spec + pos, item_end - pos);
        pos = item_end + 1;
        if (err == CF_OK && comma != NULL && pos == spec_len)
            err = CF_ERR_CONFIG; /* a trailing ',' */
    }
    if (err != CF_OK)
        asset_count = saved_count; /* all or nothing: forget this spec's assets */
    CF_ASSERT(err == CF_OK || asset_count == saved_count);
    CF_ASSERT(asset_count <= MONEY_ASSETS_MAX);
    return err;
}

size_t currency_count(void) { return ISO_CURRENCY_COUNT + asset_count; }

const struct currency *currency_at(size_t i)
{
    CF_ASSERT(asset_count <= MONEY_ASSETS_MAX);
    CF_ASSERT(i < currency_count());
    if (i < ISO_CURRENCY_COUNT)
        return &iso_currencies[i];
    return &assets[i - ISO_CURRENCY_COUNT];
}

void currency_assets_reset(void)
{
    memset(assets, 0, sizeof(assets));
    asset_count = 0;
}
