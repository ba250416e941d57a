#!/bin/bash
# Times `jaxopt-notes landscape` with its defaults on RUN; prints one JSON record.
# Usage: bench_results/landscape/time_cli_defaults.sh RUN   (RUN: e.g. from
#   jaxopt-notes train --model lenet --epochs 2 --out RUN)
set -euo pipefail
run=$1
tmp=$(mktemp -d)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/time -f '%e %U %S' -o "$tmp/time" \
    jaxopt-notes landscape --run "$run" --out "$tmp/ls" --no-progress >/dev/null 2>"$tmp/stderr"
load1=$(cut -d' ' -f1-3 /proc/loadavg)
python - "$tmp" "$load0" "$load1" <<'PY'
import json, os, platform, sys
tmp, load0, load1 = sys.argv[1:]
wall, user, system = (float(v) for v in open(os.path.join(tmp, "time")).read().split())
slices = json.load(open(os.path.join(tmp, "ls", "landscape.json")))["slices"]
print(json.dumps({
    "command": "jaxopt-notes landscape --run RUN --out DIR --no-progress",
    "wall_s": wall, "user_s": user, "sys_s": system,
    "slice_s": {k: round(v["seconds"], 2) for k, v in slices.items()},
    "load_average_before": load0, "load_average_after": load1,
    "cores": os.cpu_count(), "platform": platform.platform(),
    "stderr": open(os.path.join(tmp, "stderr")).read(),
}))
PY
rm -rf "$tmp"
