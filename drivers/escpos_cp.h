/* Code page tables for the ESC/POS parser (escpos_cp.c). */
#ifndef TS_ESCPOS_CP_H
#define TS_ESCPOS_CP_H

#include <stdint.h>

extern const uint16_t ts_escpos_cp437[128];
extern const uint16_t ts_escpos_cp850[128];
extern const uint16_t ts_escpos_cp858[128];
extern const uint16_t ts_escpos_cp1252[128];

#endif
