int ts_agent_placeholder(void); int ts_agent_placeholder(void) { return 0; }
