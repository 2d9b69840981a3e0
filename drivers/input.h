/*
 * The input runner (drivers/input.c): opens every [input.NAME] section of a
 * configuration with its driver, and polls all of them from one thread,
 * sleeping until the earliest fd event or driver deadline. It keeps each
 * input's state for status and metrics and counts guard drops.
 *
 *   ts_inputs_open(conf, &host, &in, err, sizeof err);   // parses, opens nothing yet
 *   ts_inputs_start(in);                                 // the input thread
 *   ...
 *   ts_inputs_free(in);                                  // stops, joins, closes drivers
 */
#ifndef TS_INPUT_H
#define TS_INPUT_H

#include "driver.h"
#include "guard.h"

#include <stdint.h>

struct ts_inputs;
struct json_t;

/* Checks every [input.*] section the way run does without opening
 * anything: the driver name (file:line and the known drivers on an unknown
 * one), keys the driver does not know, and the driver's own validation
 * (ts_driver_ops.check), so check-config refuses whatever run refuses. */
enum ts_err ts_inputs_check(const struct ts_conf *conf, char *err, size_t errsz);

/*
 * Opens every [input.NAME] section with its driver (driver->open: parses the
 * options, does not need the device) and reads [guard]. host is copied; its
 * callbacks run on the input thread. With no input sections this succeeds
 * with zero inputs. TS_ERR_CONFIG with "file:line: ..." in err otherwise.
 */
enum ts_err ts_inputs_open(const struct ts_conf *conf, const struct ts_driver_host *host,
                           struct ts_inputs **out, char *err, size_t errsz);
/* Starts the input thread (nothing to do with zero inputs). */
enum ts_err ts_inputs_start(struct ts_inputs *in);
/* Runs one round by hand (tests, benchmarks): polls up to timeout_ms, then
 * dispatches. Not to be mixed with ts_inputs_start. */
void ts_inputs_run_once(struct ts_inputs *in, int timeout_ms);
/* Stops and joins the thread; the drivers stay open (their state still
 * answers ts_inputs_devices_json); NULL ok. */
void ts_inputs_stop(struct ts_inputs *in);
/* Stops and joins the thread, closes every driver; NULL ok. */
void ts_inputs_free(struct ts_inputs *in);

size_t ts_inputs_count(const struct ts_inputs *in);
/* [{"name","driver","state","detail"}...] (new reference); in NULL → []. */
struct json_t *ts_inputs_devices_json(struct ts_inputs *in);
/* Inputs in each state (index enum ts_input_state) and guard drops so far. */
void ts_inputs_counts(struct ts_inputs *in, unsigned states[3], uint64_t *guard_drops);
/* Network peers turned away so far (the escpos tap's allow-list). */
uint64_t ts_inputs_refused(struct ts_inputs *in);
const char *ts_input_state_name(enum ts_input_state st);

#endif
