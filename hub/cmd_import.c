/*
 * `tillside-hub import`: Segment events from a file into the hub's store,
 * without HTTP. It exists for two jobs /v1/batch is bad at: back-filling a
 * hub from a CDP export (a replay of months of events), and building the
 * million-customer databases the benchmarks need (`gen --out` + import is an
 * order of magnitude faster than posting batches).
 *
 * Input is one JSON event per line (JSONL, what CDP exports and `gen --out`
 * write), or one or more {"batch":[...]} documents (a captured /v1/batch
 * body, pretty-printed or not). Events go through ts_seg_parse, the parser
 * /v1/batch uses, in chunks of --chunk events (default 5,000), each chunk
 * stored in one transaction by ts_hub_store_ingest. So the rules are the
 * endpoint's: a chunk is validated as a whole before anything of it is
 * stored, and events are deduplicated by messageId, which makes re-running an
 * interrupted import safe.
 *
 * A malformed line stops the import with "FILE:LINE: problem" and exit code
 * 1; nothing of its chunk is stored, the chunks before it stay imported (the
 * message says how many events that was).
 *
 * Into an empty PostgreSQL database the chunks go to a scratch SQLite file
 * instead (under $TMPDIR) and the finished tables are sent with COPY in one
 * transaction (import_copy.c): a failure there leaves the database empty.
 * Into one that holds data, or with --statements, statement by statement.
 */
#include "cmd.h"
#include "import_copy.h"
#include "sql.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CHUNK 5000
#define MAX_CHUNK 100000
#define MAX_LINE (1u << 20) /* Segment caps an event at 32 KB; 1 MB is surely not an event */
#define REPORT_MS 2000

/* Where an event came from, for messages: a line of a JSONL file, or the
 * index inside the {"batch":[...]} document starting at that line. */
struct origin {
    size_t line;
    long idx; /* -1 for JSONL */
};

struct imp {
    const char *name; /* file name for messages */
    struct ts_hub_store *store;
    size_t chunk; /* events per transaction */
    ts_buf text;  /* "{"batch":[\n" event ",\n" event ... */
    struct origin *from;
    size_t n; /* events in the current chunk */
    /* totals */
    size_t events, applied, duplicates, chunks, last_line;
    int64_t t0, last_report;
    char err[TS_HUB_PATH_MAX + 1024];
};

static enum ts_err chunk_begin(struct imp *im)
{
    ts_buf_reset(&im->text);
    im->n = 0;
    return ts_buf_puts(&im->text, "{\"batch\":[\n");
}

/* Appends one event's JSON text. Lines never hold a raw newline (they were
 * split on it, and dumped documents are compact), so event i of the chunk is
 * line i + 2 of the chunk text: find_bad_event relies on that. */
static enum ts_err chunk_add(struct imp *im, const char *ev, size_t len, struct origin at)
{
    if ((im->n && ts_buf_puts(&im->text, ",\n")) || ts_buf_append(&im->text, ev, len))
        return TS_ERR_NOMEM;
    im->from[im->n++] = at;
    return TS_OK;
}

static void where(const struct imp *im, struct origin at, char *out, size_t outsz)
{
    if (at.idx < 0)
        snprintf(out, outsz, "%s:%zu", im->name, at.line);
    else
        snprintf(out, outsz, "%s:%zu: batch[%ld]", im->name, at.line, at.idx);
}

/*
 * After the chunk failed to parse as JSON (or parsed into a different number
 * of events than lines, as `{..},{..}` on one line would), finds the first
 * event text that is not exactly one JSON object. Only runs on that error
 * path, so the common case parses every line once.
 */
static bool find_bad_event(struct imp *im)
{
    const char *p = im->text.data;
    p = strchr(p, '\n') + 1; /* skip "{"batch":[" */
    for (size_t i = 0; i < im->n; i++) {
        const char *nl = strchr(p, '\n');
        size_t len = (size_t)(nl - p);
        if (i + 1 < im->n && len > 0 && p[len - 1] == ',')
            len--; /* the separator we added */
        json_error_t jerr;
        json_t *v = json_loadb(p, len, JSON_REJECT_DUPLICATES, &jerr);
        bool bad = !json_is_object(v);
        json_decref(v);
        if (bad) {
            char at[TS_HUB_PATH_MAX + 64];
            where(im, im->from[i], at, sizeof at);
            if (!v)
                snprintf(im->err, sizeof im->err, "%s: malformed JSON at column %d: %s", at,
                         jerr.column, jerr.text);
            else
                snprintf(im->err, sizeof im->err, "%s: an event must be a JSON object", at);
            return true;
        }
        p = nl + 1;
    }
    return false;
}

static void progress(struct imp *im, bool force)
{
    int64_t now = ts_now_mono_ms();
    if (!force && now - im->last_report < REPORT_MS)
        return;
    im->last_report = now;
    double secs = (double)(now - im->t0) / 1000.0;
    fprintf(stderr, "import: %zu events (line %zu), %.0f events/s\n", im->events, im->last_line,
            secs > 0 ? (double)im->events / secs : 0.0);
}

/* Validates and stores the current chunk in one transaction. */
static int chunk_flush(struct imp *im)
{
    if (im->n == 0)
        return TS_OK;
    int rc = ts_buf_puts(&im->text, "\n]}");
    if (rc) {
        snprintf(im->err, sizeof im->err, "out of memory");
        return rc;
    }
    struct ts_seg_batch *b = NULL;
    char perr[512];
    int64_t now = ts_now_wall_ms();
    rc = ts_seg_parse(im->text.data, im->text.len, now, &b, perr, sizeof perr);
    if (rc == TS_OK && b->n != im->n) {
        rc = TS_ERR_INVAL;
        snprintf(perr, sizeof perr, "a line holds more than one event");
    }
    if (rc != TS_OK) {
        size_t idx;
        char at[TS_HUB_PATH_MAX + 64];
        /* Lines that are not one JSON object each come first: until they
         * are ruled out, the parser's event index may not match a line. */
        if (rc == TS_ERR_NOMEM) {
            snprintf(im->err, sizeof im->err, "out of memory");
        } else if (!find_bad_event(im)) {
            if (sscanf(perr, "batch[%zu]:", &idx) == 1 && idx < im->n) {
                /* An event the parser refused: name its line, keep its words. */
                where(im, im->from[idx], at, sizeof at);
                snprintf(im->err, sizeof im->err, "%s:%s", at, strchr(perr, ':') + 1);
            } else {
                where(im, im->from[0], at, sizeof at);
                snprintf(im->err, sizeof im->err, "%s and after: %s", at, perr);
            }
        }
        ts_seg_batch_free(b);
        return rc == TS_ERR_NOMEM ? rc : TS_ERR_INVAL;
    }
    struct ts_hub_ingest_result res;
    rc = ts_hub_store_ingest(im->store, b, now, &res);
    ts_seg_batch_free(b);
    if (rc != TS_OK) {
        char at[TS_HUB_PATH_MAX + 64];
        where(im, im->from[0], at, sizeof at);
        snprintf(im->err, sizeof im->err, "%s: cannot store the events from here on: %s", at,
                 rc == TS_ERR_FULL ? "hub storage full" : ts_strerror(rc));
        return rc;
    }
    im->events += im->n;
    im->applied += res.applied;
    im->duplicates += res.duplicates;
    im->chunks++;
    progress(im, false);
    return chunk_begin(im) ? TS_ERR_NOMEM : TS_OK;
}

static int add_event(struct imp *im, const char *ev, size_t len, struct origin at)
{
    int rc = chunk_add(im, ev, len, at);
    if (rc) {
        snprintf(im->err, sizeof im->err, "out of memory");
        return rc;
    }
    return im->n >= im->chunk ? chunk_flush(im) : TS_OK;
}

static size_t count_lines(const char *p, size_t n)
{
    size_t lines = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        lines++;
    return lines;
}

/*
 * One or more {"batch":[...]} documents in text (starting at line first_line
 * of the input). Each event is re-serialized compactly and fed through the
 * same chunking as JSONL, so it gets the same validation.
 */
static int import_documents(struct imp *im, const char *text, size_t len, size_t first_line)
{
    size_t off = 0, line = first_line;
    for (;;) {
        size_t skip = off;
        while (skip < len && strchr(" \t\r\n", text[skip]))
            skip++;
        line += count_lines(text + off, skip - off);
        off = skip;
        if (off >= len)
            return chunk_flush(im);
        json_error_t jerr;
        json_t *doc = json_loadb(text + off, len - off,
                                 JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &jerr);
        if (!doc) {
            snprintf(im->err, sizeof im->err, "%s:%zu: malformed JSON at column %d: %s", im->name,
                     line + (size_t)jerr.line - 1, jerr.column, jerr.text);
            return TS_ERR_INVAL;
        }
        json_t *arr = json_object_get(doc, "batch");
        if (!json_is_array(arr)) {
            json_decref(doc);
            snprintf(im->err, sizeof im->err,
                     "%s:%zu: expected one event per line or an object with a \"batch\" array",
                     im->name, line);
            return TS_ERR_INVAL;
        }
        im->last_line = line;
        int rc = TS_OK;
        for (size_t i = 0; rc == TS_OK && i < json_array_size(arr); i++) {
            char *ev = json_dumps(json_array_get(arr, i), JSON_COMPACT | JSON_ENCODE_ANY);
            if (!ev) {
                snprintf(im->err, sizeof im->err, "out of memory");
                rc = TS_ERR_NOMEM;
                break;
            }
            rc = add_event(im, ev, strlen(ev), (struct origin){line, (long)i});
            free(ev);
        }
        json_decref(doc);
        if (rc)
            return rc;
        line += count_lines(text + off, jerr.position);
        off += jerr.position;
    }
}

/* True when the first line says the input is {"batch":[...]} documents:
 * a complete object with a "batch" array, or the opening of one. */
static bool looks_like_document(const char *line, size_t len)
{
    json_t *v = json_loadb(line, len, 0, NULL);
    bool doc;
    if (v)
        doc = json_is_array(json_object_get(v, "batch"));
    else
        doc = (len == 1 && line[0] == '{') || strstr(line, "\"batch\"") != NULL;
    json_decref(v);
    return doc;
}

/* Reads the rest of f after the line already read into a document text. */
static enum ts_err slurp_rest(FILE *f, const char *first, size_t firstlen, ts_buf *out)
{
    char buf[1 << 16];
    size_t n;
    if (ts_buf_append(out, first, firstlen) || ts_buf_puts(out, "\n"))
        return TS_ERR_NOMEM;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (ts_buf_append(out, buf, n))
            return TS_ERR_NOMEM;
    return ferror(f) ? TS_ERR_IO : TS_OK;
}

static int import_stream(struct imp *im, FILE *f)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    bool first = true;
    ssize_t got;
    int rc = TS_OK;
    while ((got = getline(&line, &cap, f)) >= 0) {
        size_t len = (size_t)got;
        lineno++;
        while (len && strchr(" \t\r\n", line[len - 1]))
            len--;
        size_t lead = 0;
        while (lead < len && (line[lead] == ' ' || line[lead] == '\t'))
            lead++;
        if (lead == len)
            continue; /* blank lines are allowed anywhere */
        if (len - lead > MAX_LINE) {
            snprintf(im->err, sizeof im->err, "%s:%zu: line longer than %u bytes", im->name, lineno,
                     MAX_LINE);
            rc = TS_ERR_INVAL;
            goto out;
        }
        if (first) {
            first = false;
            if (looks_like_document(line + lead, len - lead)) {
                ts_buf doc = {0};
                rc = slurp_rest(f, line + lead, len - lead, &doc);
                if (rc == TS_OK)
                    rc = import_documents(im, doc.data, doc.len, lineno);
                else
                    snprintf(im->err, sizeof im->err, "%s: %s", im->name,
                             rc == TS_ERR_IO ? strerror(errno) : "out of memory");
                ts_buf_free(&doc);
                goto out;
            }
        }
        im->last_line = lineno;
        if ((rc = add_event(im, line + lead, len - lead, (struct origin){lineno, -1})))
            goto out;
    }
    if (ferror(f)) {
        snprintf(im->err, sizeof im->err, "%s: %s", im->name, strerror(errno));
        rc = TS_ERR_IO;
        goto out;
    }
    rc = chunk_flush(im);
out:
    free(line);
    return rc;
}

/* Opens the store at db as the running hub would stamp it (its key
 * versions), in bulk mode: cards get their peer suggestion with the
 * customer's next live event (suggest.c), which keeps a million-customer
 * import fast. */
static enum ts_err open_store(const struct ts_hub_config *cfg, const char *db,
                              struct ts_hub_store **out, char *err, size_t errsz)
{
    enum ts_err rc = ts_hub_store_open(db, &cfg->key, 0, out, err, errsz);
    if (rc)
        return rc;
    ts_hub_store_set_bulk(*out, true);
    if ((rc = ts_hub_store_set_keys(*out, &cfg->prev_key, NULL)) != TS_OK)
        ts_errf(err, errsz, "%s: cannot apply the tenant key versions", db);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tillside-hub import [-c FILE] [--format segment] [--chunk N] [--statements]\n"
            "       EVENTS\n"
            "  EVENTS is one Segment event per line (JSONL), or {\"batch\":[...]} documents;\n"
            "  '-' reads standard input. Each chunk of N events (default %d) is validated\n"
            "  like a /v1/batch and stored in one transaction. Into an empty PostgreSQL\n"
            "  database the events are staged in a scratch SQLite file under $TMPDIR and\n"
            "  copied with COPY; --statements writes them statement by statement instead.\n",
            DEFAULT_CHUNK);
}

int ts_hub_import_main(int argc, char **argv, const char *conf)
{
    const char *path = NULL;
    unsigned long chunk = DEFAULT_CHUNK;
    bool statements = false;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(o, "--statements")) {
            statements = true;
        } else if (!strcmp(o, "-c") || !strcmp(o, "--config") || !strcmp(o, "--format") ||
                   !strcmp(o, "--chunk")) {
            if (!v) {
                fprintf(stderr, "import: %s needs a value\n", o);
                return 2;
            }
            i++;
            if (o[1] == 'c' || !strcmp(o, "--config")) {
                conf = v;
            } else if (!strcmp(o, "--format")) {
                if (strcmp(v, "segment") != 0) {
                    fprintf(stderr, "import: unknown format '%s' (only 'segment')\n", v);
                    return 2;
                }
            } else {
                char *end;
                chunk = strtoul(v, &end, 10);
                if (*v < '0' || *v > '9' || *end || chunk == 0 || chunk > MAX_CHUNK) {
                    fprintf(stderr, "import: --chunk expects 1 to %d\n", MAX_CHUNK);
                    return 2;
                }
            }
        } else if (!path && (o[0] != '-' || !strcmp(o, "-"))) {
            path = o;
        } else {
            fprintf(stderr, "import: unexpected argument '%s'\n", o);
            usage(stderr);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }

    struct ts_hub_config cfg;
    struct ts_hub_store *dst = NULL; /* the PostgreSQL store a bulk import copies into */
    char scratch_dir[TS_HUB_PATH_MAX] = "", scratch[TS_HUB_PATH_MAX + 16] = "";
    struct imp im = {.name = strcmp(path, "-") ? path : "(stdin)", .chunk = chunk};
    FILE *f = NULL;
    int code = 1;
    if (ts_hub_cmd_config(conf, &cfg))
        return 1;
    if (!(im.from = calloc(chunk, sizeof *im.from)) || chunk_begin(&im)) {
        fprintf(stderr, "import: out of memory\n");
        goto out;
    }
    if (!(f = strcmp(path, "-") ? fopen(path, "r") : stdin)) {
        fprintf(stderr, "import: %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (!ts_sql_target_is_pg(cfg.db) && ts_mkdir_for_file(cfg.db) != TS_OK) {
        fprintf(stderr, "import: cannot create the directory of %s: %s\n", cfg.db, strerror(errno));
        goto out;
    }
    if (open_store(&cfg, cfg.db, &im.store, im.err, sizeof im.err) != TS_OK) {
        fprintf(stderr, "import: %s\n", im.err);
        goto out;
    }
    bool copy = false;
    if (!statements && ts_sql_target_is_pg(cfg.db) &&
        ts_hub_import_can_copy(im.store, &copy) == TS_OK && copy) {
        /* the PostgreSQL store waits for the copy; the events go to scratch */
        const char *tmp = getenv("TMPDIR");
        snprintf(scratch_dir, sizeof scratch_dir, "%s/tillside-import.XXXXXX",
                 tmp && tmp[0] ? tmp : "/tmp");
        dst = im.store;
        im.store = NULL;
        if (!mkdtemp(scratch_dir) ||
            snprintf(scratch, sizeof scratch, "%s/hub.db", scratch_dir) < 0 ||
            open_store(&cfg, scratch, &im.store, im.err, sizeof im.err) != TS_OK) {
            scratch_dir[0] = '\0';
            fprintf(stderr, "import: scratch database under %s: %s\n", tmp && tmp[0] ? tmp : "/tmp",
                    im.err[0] ? im.err : strerror(errno));
            goto out;
        }
    }
    im.t0 = im.last_report = ts_now_mono_ms();
    if (import_stream(&im, f) != TS_OK) {
        fprintf(stderr, "import: %s\n", im.err);
        if (dst)
            fprintf(stderr, "import: nothing was stored in PostgreSQL (the copy comes only "
                            "after the last event)\n");
        else
            fprintf(stderr,
                    "import: nothing of that chunk was stored; %zu events before it were "
                    "(re-running the import skips them by messageId)\n",
                    im.events);
        goto out;
    }
    if (im.events)
        progress(&im, true);
    if (dst) {
        size_t tables = 0;
        int64_t rows = 0, t1 = ts_now_mono_ms();
        ts_hub_store_close(im.store);
        im.store = NULL;
        if (ts_hub_import_copy(dst, scratch, &tables, &rows, im.err, sizeof im.err) != TS_OK) {
            fprintf(stderr, "import: copying into %s: %s; nothing was stored there\n", "PostgreSQL",
                    im.err);
            goto out;
        }
        printf("copied %zu tables (%lld rows) into PostgreSQL with COPY in %.1f s\n", tables,
               (long long)rows, (double)(ts_now_mono_ms() - t1) / 1000.0);
        im.store = dst;
        dst = NULL;
    }
    double secs = (double)(ts_now_mono_ms() - im.t0) / 1000.0;
    ts_buf stats = {0};
    json_int_t customers = -1;
    if (ts_hub_store_stats(im.store, &stats) == TS_OK) {
        json_t *o = json_loads(stats.data, 0, NULL);
        customers = json_integer_value(json_object_get(o, "customers"));
        json_decref(o);
    }
    ts_buf_free(&stats);
    printf("imported %zu events in %zu transactions (%zu applied, %zu duplicates) in %.1f s; "
           "the hub holds %" JSON_INTEGER_FORMAT " customers\n",
           im.events, im.chunks, im.applied, im.duplicates, secs, customers);
    code = 0;
out:
    if (f && f != stdin)
        fclose(f);
    ts_hub_store_close(im.store);
    ts_hub_store_close(dst);
    if (scratch_dir[0]) {
        static const char *const parts[] = {"", "-wal", "-shm", "-journal"};
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
            char p[TS_HUB_PATH_MAX + 32];
            snprintf(p, sizeof p, "%s%s", scratch, parts[i]);
            (void)unlink(p);
        }
        (void)rmdir(scratch_dir);
    }
    ts_buf_free(&im.text);
    free(im.from);
    return code;
}
