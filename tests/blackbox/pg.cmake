# The hub on PostgreSQL: each entry runs under tests/tools/with_pg.sh, which
# starts a throwaway server and sets TS_TEST_PG; tslib then points the hub's
# [hub] db at it. test_pg.py holds what only a shared database can show (two
# hubs, one feed); the others are the SQLite scenarios run again on PostgreSQL.
function(ts_blackbox_pg_test name script)
    add_test(NAME ${name} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tools/with_pg.sh ${PYTHON3} -u
        ${CMAKE_CURRENT_SOURCE_DIR}/blackbox/${script} ${ARGN})
    set_tests_properties(${name} PROPERTIES LABELS "blackbox;pg" TIMEOUT 300
        ENVIRONMENT "TS_BIN_DIR=${CMAKE_BINARY_DIR};TS_SRC_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
ts_blackbox_pg_test(bb_pg_two_hubs_one_feed test_pg.py two_hubs_one_feed)
ts_blackbox_pg_test(bb_pg_forward_once_with_two_hubs test_pg.py forward_once_with_two_hubs)
ts_blackbox_pg_test(bb_pg_long_poll_across_hubs test_pg.py long_poll_across_hubs)
ts_blackbox_pg_test(bb_pg_parked_polls_lost_notify test_pg.py parked_polls_lost_notify)
ts_blackbox_pg_test(bb_pg_server_restart test_pg.py pg_restart)
ts_blackbox_pg_test(bb_pg_tickets_across_hubs test_pg.py tickets_across_hubs)
ts_blackbox_pg_test(bb_pg_tickets_across_hubs_best test_pg.py tickets_across_hubs_best)
# Issue 14: the same two hubs behind nginx's stream module (round robin, TLS passed through).
ts_blackbox_pg_test(bb_pg_nginx_stream_round_robin_resumes test_nginx_stream.py round_robin_resumes)
ts_blackbox_pg_test(bb_pg_import_copy_matches_statements test_import.py copy_matches_statements)
ts_blackbox_pg_test(bb_pg_import_jsonl_then_sync test_import.py jsonl_then_sync)
ts_blackbox_pg_test(bb_pg_e2e_scan_shows_card test_e2e.py scan_shows_card)
ts_blackbox_pg_test(bb_pg_sync_erase_reaches_store test_sync.py erase_reaches_store)
ts_blackbox_pg_test(bb_pg_sync_long_poll_delivers_fast test_sync.py long_poll_delivers_fast)
ts_blackbox_pg_test(bb_pg_sync_key_rotation_no_gap test_sync.py key_rotation_no_gap)
ts_blackbox_pg_test(bb_pg_purch_hub_reaches_feed test_purchases_hub.py purchase_reaches_feed)
ts_blackbox_pg_test(bb_pg_purch_hub_forwarding_outage test_purchases_hub.py forwarding_through_outage)
ts_blackbox_pg_test(bb_pg_purch_hub_restart_pending test_purchases_hub.py restart_with_pending)
ts_blackbox_pg_test(bb_pg_trust_enroll_end_to_end test_trust.py enroll_end_to_end)
ts_blackbox_pg_test(bb_pg_trust_revoked_terminal_refused test_trust.py revoked_terminal_refused)
ts_blackbox_pg_test(bb_pg_nginx_refusals test_nginx.py refusals)
ts_blackbox_pg_test(bb_pg_ops_metrics_promtool test_ops.py metrics_promtool)
ts_blackbox_pg_test(bb_pg_fleet_report_is_checked test_fleet.py report_is_checked_and_named_by_certificate)
ts_blackbox_pg_test(bb_pg_fleet_agent_reports_then_turns_stale test_fleet.py agent_reports_then_turns_stale)
ts_blackbox_pg_test(bb_pg_sink_klaviyo_bad_item_split test_sinks.py klaviyo_bad_item_split)
ts_blackbox_pg_test(bb_pg_sink_kill9_during_delivery test_sinks.py kill9_during_delivery)
ts_blackbox_pg_test(bb_pg_sink_several_one_down test_sinks.py several_sinks_one_down)
# Inbound sources: the replay cache and dedupe on PostgreSQL.
ts_blackbox_pg_test(bb_pg_sources_refused_store_nothing test_sources.py refused_store_nothing)
ts_blackbox_pg_test(bb_pg_sources_klaviyo_activity_on_card test_sources.py klaviyo_activity_on_card)
ts_blackbox_pg_test(bb_pg_offers_redeemed_once_gone_everywhere test_offers.py redeemed_once_gone_everywhere)
ts_blackbox_pg_test(bb_pg_offers_withdrawn_and_expired test_offers.py withdrawn_and_expired)
ts_blackbox_pg_test(bb_pg_matchrate_seven_of_ten_five_of_seven test_matchrate.py seven_of_ten_five_of_seven)
# Issue 18: returns and consent stored on PostgreSQL.
ts_blackbox_pg_test(bb_pg_returns_arrive_once test_returns.py return_arrives_once)
ts_blackbox_pg_test(bb_pg_consent_withdrawn_everywhere test_returns.py consent_withdrawn_everywhere)
# Issues 16 and 18: consent and coupon records in Data Cloud, stored on PostgreSQL.
ts_blackbox_pg_test(bb_pg_sinks4_datacloud_consent_and_coupon test_sinks4.py datacloud_consent_and_coupon)
# Issue 16: the sinks' concurrency, e-mail and consent on PostgreSQL.
ts_blackbox_pg_test(bb_pg_sinks3_several_in_flight_kill9 test_sinks3.py several_in_flight_kill9)
ts_blackbox_pg_test(bb_pg_sinks3_klaviyo_email_from_customer test_sinks3.py klaviyo_email_from_customer)
ts_blackbox_pg_test(bb_pg_sinks5_iterable_kinds_own_endpoints test_sinks5.py iterable_kinds_own_endpoints)
