/*
 * What the Bloomreach, Data Cloud and Iterable vendor files share instead
 * of a copy in each: the order and its lines as read from a stored event (a
 * Segment "Order Completed" track event, hub/sink.h), and their reading of
 * an answer's status.
 */
#ifndef TS_HUB_SINK_LINE_H
#define TS_HUB_SINK_LINE_H

#include "sink.h"

struct ts_sink_order {
    const char *order_id; /* properties.order_id (the receipt); never NULL */
    const char *currency; /* NULL when absent */
    const char *store;    /* context.tillside.store; NULL when absent */
    const char *terminal; /* context.tillside.terminal; NULL when absent */
    double total;         /* properties.total, else revenue, else the lines' sum */
    size_t nlines;        /* properties.products[] entries */
};

struct ts_sink_line {
    const char *product_id; /* product_id, else sku; never NULL for a line */
    const char *sku;        /* NULL when absent */
    const char *name;       /* NULL when absent */
    double price;           /* per unit */
    double quantity;        /* 1 when absent */
};

/* The order of e; TS_ERR_INVAL with err when it has no order id. */
enum ts_err ts_sink_order_of(const struct ts_sink_event *e, struct ts_sink_order *o, char *err,
                             size_t errsz);
/* Line i of e; TS_ERR_INVAL with err when it has no id or no readable price. */
enum ts_err ts_sink_line_at(const struct ts_sink_event *e, size_t i, struct ts_sink_line *l,
                            char *err, size_t errsz);

/* ts_sink_status_verdict, except that 403 is retried: all three vendors
 * answer it for a key that lacks a permission (a setting to fix, after which
 * everything goes), not for a bad item, so nothing is dead-lettered for it. */
enum ts_sink_verdict ts_sink_status_verdict_keyed(int status, size_t n);

#endif
