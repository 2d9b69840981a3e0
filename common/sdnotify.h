/*
 * systemd's service notification protocol without libsystemd: one datagram
 * "READY=1", "WATCHDOG=1", "STOPPING=1" ... to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (sd_notify(3), "NOTIFY_SOCKET" in systemd.exec(5)). Outside
 * systemd every call is a no-op, so the programs run the same by hand.
 */
#ifndef TS_SDNOTIFY_H
#define TS_SDNOTIFY_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Sends state ("READY=1\nSTATUS=..."). TS_OK when sent or when not
 * started by systemd (no $NOTIFY_SOCKET: nothing to send), TS_ERR_INVAL for
 * a socket path we cannot use, TS_ERR_IO when the send failed. */
enum ts_err ts_sd_notify(const char *state);

/* The watchdog interval systemd expects pings within, in microseconds
 * ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or this process), 0 = none. */
int64_t ts_sd_watchdog_usec(void);

/* Before any thread starts: blocks SIGINT and SIGTERM (into *set, for
 * ts_sd_run_until_signal) so every thread inherits the mask and only the
 * main loop's sigwait sees them, and ignores SIGPIPE (a peer that hung up
 * is a write error, not the end of the daemon). */
void ts_sd_block_stop_signals(sigset_t *set);

/*
 * The daemon's main loop once everything is started: tells systemd READY=1,
 * then waits for one of the signals in set (which the caller has blocked in
 * every thread). Under a watchdog it wakes twice per interval and pings
 * WATCHDOG=1 only after alive(ud) returned true, so a wedged process stops
 * pinging and systemd restarts it; alive may be NULL. Sends STOPPING=1 and
 * returns the signal received.
 */
int ts_sd_run_until_signal(const sigset_t *set, bool (*alive)(void *ud), void *ud);

#endif
