/*
 * The tillside commands (the program, not the ts_agent library): one file
 * each, cmd_NAME.c, called by main.c with the parsed arguments. Each
 * returns the process exit code. Commands load the configuration; the
 * library is handed what it needs and never reads a configuration file.
 */
#ifndef TS_AGENT_CMD_H
#define TS_AGENT_CMD_H

#include "agent.h"

#include <stdio.h>

struct ts_httpc;

/* `tillside run` (cmd_run.c): the daemon until SIGINT/SIGTERM. */
int ts_cmd_run(const struct ts_agent_config *cfg);
/* `tillside scan CODE [--aim ID]` (cmd_scan.c): through the running agent. */
int ts_cmd_scan(const struct ts_agent_config *cfg, const char *code, const char *aim);
/* `tillside lookup CODE [--text]` (cmd_lookup.c): from the cache file. */
int ts_cmd_lookup(const struct ts_agent_config *cfg, const char *code, bool as_text);
/* `tillside status [--json]` (cmd_status.c). */
int ts_cmd_status(const struct ts_agent_config *cfg, bool as_json);
/* For `tillside devices`: the configured inputs and the state the running
 * agent reports for each (nothing when conf_path does not load). */
void ts_cmd_inputs_print(FILE *out, const char *conf_path);
/* `tillside version` (cmd_version.c). */
int ts_cmd_version(void);
/* `tillside doctor` (cmd_doctor.c): 0 ok, 1 a check failed, 3 warnings only. */
int ts_cmd_doctor(const char *conf_path);
/* `tillside watch` (cmd_watch.c): live cards in the terminal until SIGINT/SIGTERM. */
int ts_cmd_watch(const struct ts_agent_config *cfg);
/* `tillside enroll --hub URL --token TOKEN [--ca FILE]` (cmd_enroll.c);
 * argv[0] is "enroll", conf_path the -c given before it (a -c after it wins). */
int ts_cmd_enroll(int argc, char **argv, const char *conf_path);
/* `tillside outbox list [--dead|--pending|--sent|--all]` and `tillside
 * outbox retry [MESSAGE_ID|--all]` (cmd_outbox.c). */
int ts_cmd_outbox(const struct ts_agent_config *cfg, int argc, const char *const *argv);
/* main.c's entry: argv[0] is "outbox"; a -c FILE among the arguments wins
 * over conf_path. Loads the configuration, then ts_cmd_outbox. */
int ts_cmd_outbox_main(int argc, char **argv, const char *conf_path);

/* Loads conf_path (with enrolled.conf) and sets the log level; says why on
 * stderr when it cannot (cmd_common.c). */
enum ts_err ts_cmd_load_config(const char *conf_path, struct ts_agent_config *cfg);
/* A client for the running agent's loopback API (cmd_common.c); says why on
 * stderr when it cannot make one. */
enum ts_err ts_cmd_api_client(const struct ts_agent_config *cfg, struct ts_httpc **out);

#endif
