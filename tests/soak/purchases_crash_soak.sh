#!/bin/sh
# The purchase crash test of CI (bb_purch_agent_crash_cycles: 200 cycles) as a
# soak: CYCLES (default 1000) rounds of 4 POS threads posting purchases while
# the agent is SIGKILLed at a random moment and restarted, then a drain and
# the check that the hub holds every acknowledged purchase exactly once.
#   tests/soak/purchases_crash_soak.sh [BUILD_DIR] [CYCLES] [SEED]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build/dev}
export TS_BIN_DIR=$(cd "$build" && pwd)
export TS_CRASH_CYCLES=${2:-1000}
export TS_CRASH_SEED=${3:-$(date +%s)}
echo "soak: $TS_CRASH_CYCLES cycles, seed $TS_CRASH_SEED, binaries from $TS_BIN_DIR"
exec python3 -u "$here/../blackbox/test_purchases_agent.py" crash_cycles
