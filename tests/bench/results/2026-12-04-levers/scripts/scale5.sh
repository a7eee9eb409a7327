#!/bin/bash
export MAX_CONNECTIONS=8192
ulimit -n "$(ulimit -Hn)"
tpl=/work/main/tests/bench/gatherd-profile.json.in
bash /work/shared/bench/run.sh -m slow -c 10000 -r 1 -d 10 -q 10 -M -o /work/exp/scale5.jsonl \
  "after=18094:envsubst < $tpl | sed s/19093/19094/ > \$BENCH_RUNDIR/a.json && exec /work/main/build-release/gatherd -c \$BENCH_RUNDIR/a.json" > /work/exp/scale5.md 2>&1
