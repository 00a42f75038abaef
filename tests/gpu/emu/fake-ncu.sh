#!/usr/bin/env bash
# tests/gpu/emu/fake-ncu.sh: Nsight Compute's stand-in in rehearse.sh's `profile` phase (there is no
# ncu without a GPU). It checks the options run.sh passes (the SpeedOfLight section, the metrics
# tests/gpu/ncu_table.py reads, the kernel filter, --csv), runs the profiled command as ncu does
# (its output goes to stdout, before the rows, as ncu's own does), and prints rows in the layout
# of `ncu --csv` (details page: one row per launch and metric) for two kernels with made-up values.
# What it proves: run.sh's command line and table plumbing; not ncu's metric names on a real device.
set -uo pipefail
csv=0 section="" metrics="" filter=""
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do
  case "$1" in
    --csv) csv=1; shift ;;
    --section) section="$2"; shift 2 ;;
    --metrics) metrics="$2"; shift 2 ;;
    -k) filter="$2"; shift 2 ;;
    *) shift 2 ;; # --clock-control, --launch-skip, --launch-count: values not checked
  esac
done
bad() { echo "fake-ncu: $1" >&2; exit 2; }
[ $csv -eq 1 ] || bad "no --csv"
[ "$section" = SpeedOfLight ] || bad "section '$section', not SpeedOfLight"
[ -n "$filter" ] || bad "no kernel filter (-k)"
for m in smsp__issue_active.avg.pct_of_peak_sustained_active sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active \
  smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio; do
  case ",$metrics," in *",$m,"*) ;; *) bad "--metrics lacks $m" ;; esac
done
[ $# -gt 0 ] || bad "no command to profile"
"$@" || bad "the profiled command failed ($*)"
row() { printf '"%s","1","ftune","host","%s","1","7","(128, 1, 1)","(8, 4, 1)","0","9.0","%s","%s","%s","%s"\n' "$@"; }
echo '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"'
id=0
for k in "ft_k_attn_dkv_mma<128, 64>(__nv_bfloat16 *, long)" "ft_k_rmsnorm(__nv_bfloat16 *, long)"; do
  row $id "$k" "GPU Speed Of Light Throughput" "Duration" "usecond" "1,234.5"
  row $id "$k" "GPU Speed Of Light Throughput" "Compute (SM) Throughput" "%" "31.2"
  row $id "$k" "GPU Speed Of Light Throughput" "Memory Throughput" "%" "12.0"
  for m in ${metrics//,/ }; do row $id "$k" "Command line profiler metrics" "$m" "" "0.25"; done
  id=$((id + 1))
done
