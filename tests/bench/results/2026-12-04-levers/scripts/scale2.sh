#!/bin/bash
# scale A/B: the read bound before (820dc55) and with the kernel's receive stamps (53b924c)
export MAX_CONNECTIONS=8192
ulimit -n "$(ulimit -Hn)"
tpl=/work/main/tests/bench/gatherd-profile.json.in
bash /work/shared/bench/run.sh -m slow -c 10000 -r 2 -d 10 -q 30 -M -o /work/exp/scale2.jsonl \
  "before=18093:envsubst < $tpl > \$BENCH_RUNDIR/b.json && exec /work/old/build-rel/gatherd -c \$BENCH_RUNDIR/b.json" \
  "after=18094:envsubst < $tpl | sed s/19093/19094/ > \$BENCH_RUNDIR/a.json && exec /work/main/build-release/gatherd -c \$BENCH_RUNDIR/a.json" | tee /work/exp/scale2.md
