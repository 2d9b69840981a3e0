int ts_hub_placeholder(void); int ts_hub_placeholder(void) { return 0; }
