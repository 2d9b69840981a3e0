/*
 * The agent's purchase journal, upload outbox and dead letters: one SQLite
 * file of its own (<state_dir>/outbox.db), apart from the card cache so that
 * a 410 resync or a cache reset never touches a purchase.
 *
 * Every purchase is one row of `journal`, keyed by its messageId and unique
 * by receipt number. Its state is the queue it is in: "pending" (the outbox,
 * in seq order), "sent" (the hub acknowledged it; kept as the local journal
 * for receipt lookups) or "dead" (the dead letters, with a reason, until an
 * operator retries them). The file runs in WAL mode with synchronous=FULL:
 * ts_outbox_add returns only after the row is on stable storage.
 *
 * Thread-safe: one connection behind an internal mutex, shared by the API
 * threads (submit) and the upload thread.
 */
#ifndef TS_OUTBOX_H
#define TS_OUTBOX_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_OUTBOX_ID_MAX 64 /* message ids, with the NUL */

struct ts_outbox;

/*
 * Opens or creates path. vfs names a registered SQLite VFS (NULL = the
 * default; the power-loss test passes its fault-injecting one). A file that
 * is not an outbox gives TS_ERR_DB with the reason in err.
 */
enum ts_err ts_outbox_open(const char *path, const char *vfs, struct ts_outbox **out, char *err,
                           size_t errsz);
/* Opens an existing outbox without creating it (the CLI); TS_ERR_NOTFOUND
 * when the file does not exist. */
enum ts_err ts_outbox_open_existing(const char *path, struct ts_outbox **out, char *err,
                                    size_t errsz);
void ts_outbox_close(struct ts_outbox *o); /* NULL ok */

struct ts_outbox_entry {
    const char *message_id; /* < TS_OUTBOX_ID_MAX bytes */
    const char *receipt;    /* unique in the journal */
    const char *source;     /* "api", "escpos:NAME" */
    const char *cid;        /* the customer's card cid, NULL when unknown */
    const char *event;      /* the Segment event JSON, without sentAt */
};

/*
 * Records e as pending, durably, before returning TS_OK. When the receipt
 * was recorded before, nothing changes, *duplicate is set and existing_id
 * gets the first message id. TS_ERR_FULL when the disk (or the file size
 * limit) is full: nothing was recorded.
 */
enum ts_err ts_outbox_add(struct ts_outbox *o, const struct ts_outbox_entry *e, int64_t now_ms,
                          bool *duplicate, char existing_id[TS_OUTBOX_ID_MAX]);

struct ts_outbox_row {
    int64_t seq;
    char message_id[TS_OUTBOX_ID_MAX];
    char *event; /* malloc'd JSON text */
    size_t event_len;
};

/*
 * Up to max_rows pending rows after seq `after`, in order, whose events add
 * up to at most max_bytes (the first row is returned even when alone larger,
 * so the caller can dead-letter it). *rows is malloc'd; free with
 * ts_outbox_rows_free.
 */
enum ts_err ts_outbox_pending(struct ts_outbox *o, int64_t after, size_t max_rows, size_t max_bytes,
                              struct ts_outbox_row **rows, size_t *n);
void ts_outbox_rows_free(struct ts_outbox_row *rows, size_t n);

/* Marks the pending rows with these ids sent, in one transaction. */
enum ts_err ts_outbox_mark_sent(struct ts_outbox *o, const char *const *ids, size_t n,
                                int64_t now_ms);
/* Moves one pending row to the dead letters with reason. */
enum ts_err ts_outbox_mark_dead(struct ts_outbox *o, const char *id, const char *reason,
                                int64_t now_ms);
/* Dead letters back to pending: the one with id, or all when id is NULL.
 * *moved (may be NULL) gets how many; TS_ERR_NOTFOUND when id is no dead
 * letter. */
enum ts_err ts_outbox_retry(struct ts_outbox *o, const char *id, int64_t *moved);

struct ts_outbox_stats {
    int64_t pending, sent, dead;
    int64_t oldest_pending_ms; /* wall ms the oldest pending row was recorded; 0 = none */
};
enum ts_err ts_outbox_stats(struct ts_outbox *o, struct ts_outbox_stats *st);

struct ts_outbox_item {
    const char *message_id, *receipt, *source, *state, *reason, *cid; /* reason/cid may be NULL */
    int64_t created_ms, done_ms;                                      /* done_ms 0 = not yet */
    const char *event;
};
/* Calls fn for every row in state ("pending", "sent", "dead"; NULL = all),
 * oldest first, at most limit rows (<= 0: all). fn returning false stops. */
enum ts_err ts_outbox_list(struct ts_outbox *o, const char *state, long limit,
                           bool (*fn)(void *ud, const struct ts_outbox_item *it), void *ud);
/* The journal row of a receipt: its event (malloc'd) and state, or
 * TS_ERR_NOTFOUND. */
enum ts_err ts_outbox_find_receipt(struct ts_outbox *o, const char *receipt, char **event,
                                   char state[8]);

#endif
