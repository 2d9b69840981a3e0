/*
 * INI configuration (own small reader, see conf.c). Keeps every key with its file and line
 * so that errors can say "tillside.conf:12: [hub] url: ...".
 */
#ifndef TS_CONF_H
#define TS_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "ts.h"

struct ts_conf;

/* Loads path. On a syntax error returns TS_ERR_CONFIG and writes
 * "file:line: message" into err. */
enum ts_err ts_conf_load(const char *path, struct ts_conf **out, char *err, size_t errsz);
/* Parses INI text from memory (name is used in messages). */
enum ts_err ts_conf_parse(const char *name, const char *text, struct ts_conf **out, char *err,
                          size_t errsz);
void ts_conf_free(struct ts_conf *c);

/* Borrowed string valid until ts_conf_free; def when missing. */
const char *ts_conf_get(const struct ts_conf *c, const char *section, const char *key,
                        const char *def);
/* Integer / boolean getters: on a malformed value they return TS_ERR_CONFIG
 * and describe it (with file:line) in err; *out keeps def when missing. */
enum ts_err ts_conf_get_int(const struct ts_conf *c, const char *section, const char *key, long def,
                            long min, long max, long *out, char *err, size_t errsz);
enum ts_err ts_conf_get_bool(const struct ts_conf *c, const char *section, const char *key,
                             bool def, bool *out, char *err, size_t errsz);
/* "file:line" of a key, or the file name when missing. */
const char *ts_conf_where(const struct ts_conf *c, const char *section, const char *key, char *buf,
                          size_t bufsz);

/* The one configuration error: writes "file:line: [section] key: <fmt...>"
 * into err and returns TS_ERR_CONFIG, so every module words it alike. */
enum ts_err ts_conf_errf(const struct ts_conf *c, const char *section, const char *key, char *err,
                         size_t errsz, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Iterates sections in file order: returns the i-th distinct section name,
 * NULL past the end. */
const char *ts_conf_section(const struct ts_conf *c, size_t i);
/* The i-th key of section in file order (each key once: a repeated key
 * keeps its last value), NULL past the end. */
const char *ts_conf_key(const struct ts_conf *c, const char *section, size_t i);

#endif
