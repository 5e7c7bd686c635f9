# Sourced by the CPU benchmark scripts: waiting for an idle machine and recording the CPU use around each run.
# Needs QUIET_WAIT (seconds to wait at most for idle CPUs).

cpu_busy() {  # JSON fields: % of CPU time (all cores) busy, and % stolen by the hypervisor, over the next second
  local a b
  read -r -a a < <(grep '^cpu ' /proc/stat)
  sleep 1
  read -r -a b < <(grep '^cpu ' /proc/stat)
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  local idle=$((b[4] - a[4] + b[5] - a[5])) steal=$((b[8] - a[8]))
  ((total > 0)) || total=1
  echo "\"cpu_busy_pct_before\":$((100 * (total - idle) / total)),\"cpu_steal_pct_before\":$((100 * steal / total))"
}

wait_quiet() {  # waits (at most QUIET_WAIT seconds) until the CPUs were idle (< 10% busy) for two seconds in a row
  local waited=0 calm=0 busy
  while ((waited < QUIET_WAIT)); do
    busy=$(cpu_busy | sed 's/.*before":\([0-9]*\),.*/\1/')
    waited=$((waited + 1))
    if ((busy < 10)); then calm=$((calm + 1)); ((calm >= 2)) && break; else calm=0; fi
  done
  echo "$waited"
}

marker() {  # marker JSON-FIELDS: waits for a quiet machine, then prints a run marker with the CPU state
  local waited
  waited=$(wait_quiet)
  echo "{\"kind\":\"run\",$1,\"waited_for_quiet_s\":$waited,\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",$(cpu_busy)}"
}

after() {  # CPU use by others right after a run (ours has ended)
  echo "{\"kind\":\"run_end\",$(cpu_busy | sed 's/_before/_after/g')}"
}
