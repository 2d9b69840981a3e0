/*
 * The escpos input driver (escpos_relay.c): a TCP 9100 or serial relay
 * between a POS and its receipt printer that parses the receipts on the way
 * and hands purchases to host->on_purchase. Config keys: docs/OPERATIONS.md
 * "Receipt tap".
 */
#ifndef TS_ESCPOS_RELAY_H
#define TS_ESCPOS_RELAY_H

#include "driver.h"

extern const struct ts_driver_ops ts_escpos_driver;

#endif
