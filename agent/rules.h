/*
 * Identity rules (PRODUCT.md §4.2): `[rule.NAME]` sections of the agent
 * configuration map a scan to an identifier kind (loyalty, receipt, order,
 * product) and the identifier text to key. Rules are tried in file order;
 * the first whose every match key holds wins. After them come the built-in
 * defaults: a GS1 element string carrying a GSRN (AI 8018) is a loyalty
 * number (the 18 digits), and anything else is a loyalty number as scanned
 * (the behaviour before rules existed).
 *
 * A rule can take a part of the code as the identifier, in this order:
 * gs1_ai (the AI's value), url_param (a query parameter of an http(s) URL,
 * percent-decoded: "https://app.example/loyalty?card=..."), then prefix,
 * lengths and regex test what is left, capture takes a group of the regex
 * match, and strip_prefix cuts a fixed text. Scans are outside bytes: every
 * step is bounded by TS_SCAN_MAX, and back-references (\1 in an ERE, a
 * glibc extension that can take exponential time) are refused.
 *
 * The configuration keeps the rules as text (struct ts_rules_conf, copied
 * by value with the rest of ts_agent_config); ts_rules_new compiles them
 * (the regular expressions) for the agent.
 */
#ifndef TS_AGENT_RULES_H
#define TS_AGENT_RULES_H

#include "../drivers/scan.h"
#include "../sync/ident.h"

#include <stdbool.h>
#include <stddef.h>

#define TS_RULES_MAX 32
#define TS_RULE_TEXT 128

struct ts_rule_conf {
    char name[48];             /* the NAME of [rule.NAME]; "default:..." for built-ins */
    char symbology[24];        /* "]E0"-style AIM prefix or a type name ("EAN-13"); "" = any */
    int upos;                  /* the type when symbology is a name, else 0 */
    char prefix[TS_RULE_TEXT]; /* "" = any */
    char regex[TS_RULE_TEXT];  /* POSIX ERE, "" = any */
    long length, min_length, max_length; /* 0 = not checked */
    char gs1_ai[5];                      /* "" = whole data */
    enum ts_ident_kind kind;
    char url_param[48]; /* "" = none; else the identifier is this query parameter of a URL */
    int capture;        /* 0 = none; else the identifier is this group of regex (1..9) */
    char strip_prefix[TS_RULE_TEXT]; /* removed from the identifier when it starts with it */
    bool need_gs1;                   /* built-in only: the AIM id (or "(AI)" form) must say GS1 */
};

struct ts_rules_conf {
    int n;
    struct ts_rule_conf r[TS_RULES_MAX];
};

struct ts_conf;
/* Reads every [rule.NAME] section of conf in file order. Errors name
 * file:line, section and key: "tillside.conf:12: [rule.app] regex: ...". */
enum ts_err ts_rules_conf_read(const struct ts_conf *conf, struct ts_rules_conf *out, char *err,
                               size_t errsz);

struct ts_rules;
/* Compiles the configured rules followed by the built-in defaults. */
enum ts_err ts_rules_new(const struct ts_rules_conf *conf, struct ts_rules **out, char *err,
                         size_t errsz);
void ts_rules_free(struct ts_rules *r); /* NULL ok */

struct ts_rule_match {
    enum ts_ident_kind kind;
    const char *rule;        /* the rule's name (borrowed from the rules) */
    char value[TS_SCAN_MAX]; /* the identifier to normalize and key */
};

/* The first rule matching scan. Always matches (the last default takes
 * anything); TS_ERR_INVAL only when the identifier left is empty. */
enum ts_err ts_rules_resolve(const struct ts_rules *r, const struct ts_scan *scan,
                             struct ts_rule_match *out);

#endif
