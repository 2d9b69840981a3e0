/*
 * The order and its lines as the vendor files of sinks2 read them from a
 * stored event (a Segment "Order Completed" track event, hub/sink.h): one
 * reading of the till's fields shared by Bloomreach, Data Cloud and
 * Iterable instead of a copy in each.
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

#endif
