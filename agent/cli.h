/* tillside subcommands (cli.c); each returns the process exit code. */
#ifndef TS_AGENT_CLI_H
#define TS_AGENT_CLI_H

#include "agent.h"

int ts_cli_scan(const struct ts_agent_config *cfg, const char *code, const char *aim);
int ts_cli_lookup(const struct ts_agent_config *cfg, const char *code, bool as_text);
int ts_cli_status(const struct ts_agent_config *cfg, bool as_json);
int ts_cli_version(void);
/* `tillside doctor` (doctor.c): 0 ok, 1 a check failed, 3 warnings only. */
int ts_cli_doctor(const char *conf_path);
/* Live cards in the terminal until SIGINT/SIGTERM. */
int ts_cli_watch(const struct ts_agent_config *cfg);

#endif
