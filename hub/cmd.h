/*
 * The commands of tillside-hub other than serving (main.c), one file each
 * (cmd_*.c), in the ts_hub_cli library: they load the configuration file
 * and call the hub library, which never reads one itself. argv[0] is the
 * command; conf is the configuration named before the command (a -c after
 * it wins). Each returns a process exit code.
 */
#ifndef TS_HUB_CMD_H
#define TS_HUB_CMD_H

#include "hub.h"

/* Loads the configuration conf into cfg: 0, or 1 (an exit code) after
 * saying why not on stderr (cmd_common.c). */
int ts_hub_cmd_config(const char *conf, struct ts_hub_config *cfg);
/* Loads conf into cfg and opens the store it names (flags as
 * ts_hub_store_open's); NULL after saying why not on stderr. */
struct ts_hub_store *ts_hub_cmd_store(const char *conf, int flags, struct ts_hub_config *cfg);

/* `tillside-hub check-config` (cmd_check_config.c): 0 ok, 1 error printed. */
int ts_hub_check_config_main(const char *conf);
/* `tillside-hub gen ...` (cmd_gen.c): synthetic CDP events. */
int ts_hub_gen_main(int argc, char **argv);
/* `tillside-hub import [-c FILE] EVENTS` (cmd_import.c). */
int ts_hub_import_main(int argc, char **argv, const char *conf);
/* `tillside-hub erase [-c FILE] [--loyalty ID | CUSTOMER]` (cmd_erase.c). */
int ts_hub_erase_main(int argc, char **argv, const char *conf);
/* `tillside-hub enroll-token ...` and `revoke ...` (cmd_enroll.c). */
int ts_hub_enroll_token_main(int argc, char **argv, const char *conf);
int ts_hub_revoke_main(int argc, char **argv, const char *conf);
/* `tillside-hub crl [-c FILE] --out FILE [--days N]` (cmd_crl.c): the
 * revoked terminal certificates as a CRL for the proxy's ssl_crl. */
int ts_hub_crl_main(int argc, char **argv, const char *conf);
/* `tillside-hub fleet [-c FILE] [--store S] [--unhealthy] [--json]`
 * (cmd_fleet.c): every terminal's last health report. */
int ts_hub_fleet_main(int argc, char **argv, const char *conf);
/* `tillside-hub upstream list|show|retry|drop [--sink NAME]`
 * (cmd_upstream.c): the sinks' queues and dead letters. */
int ts_hub_upstream_main(int argc, char **argv, const char *conf);

#endif
