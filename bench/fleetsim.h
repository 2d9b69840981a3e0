/*
 * What the fleet simulator's two modes share (fleetsim.c: a fresh
 * connection per poll; fleetsim_lp.c: long-polls on kept connections).
 */
#ifndef TS_FLEETSIM_H
#define TS_FLEETSIM_H

#include <stdbool.h>
#include <stddef.h>

struct fleet_samples {
    double *v;
    size_t n, cap;
};

void fleet_add(struct fleet_samples *s, double v);
void fleet_merge(struct fleet_samples *into, const struct fleet_samples *from);
/* "name": {"n", "p50", "p90", "p99", "max"} (sorts s). */
void fleet_print_stats(const char *name, struct fleet_samples *s, bool comma);
double fleet_now_ms(void); /* monotonic */
double fleet_cpu_now_s(void);
double fleet_jitter(unsigned *seed, double span);

/* tNNNN.pem/key under pki/fleet for store/name, made once with the bench CA
 * (pki/ca.pem, pki/ca.key); the paths into cert and key (512 bytes each). */
int fleet_ensure_cert(const char *pki, const char *store, const char *name, char *cert, char *key);

/* A one-sale batch as the purchase contract has it (contract.md): its
 * length, and its messageId into mid (96 bytes). */
int fleet_purchase_body(char *body, size_t bodysz, const char *store, const char *name, int idx,
                        unsigned long receipt_no, unsigned *seed, char *mid);

/* The long-poll mode (fleetsim_lp.c): argv as for main. */
int fleet_lp_main(int argc, char **argv);

#endif
