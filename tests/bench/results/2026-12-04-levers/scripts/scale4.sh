#!/bin/bash
# scale: max_requests_in_flight 2048 (default) against 1024, same build, A B A B
export MAX_CONNECTIONS=8192
ulimit -n "$(ulimit -Hn)"
tpl=/work/main/tests/bench/gatherd-profile.json.in
bash /work/shared/bench/run.sh -m slow -c 10000 -r 2 -d 10 -q 30 -M -o /work/exp/scale4.jsonl \
  "slots2048=18093:envsubst < $tpl > \$BENCH_RUNDIR/b.json && exec /work/main/build-release/gatherd -c \$BENCH_RUNDIR/b.json" \
  "slots1024=18094:envsubst < $tpl | sed -e s/19093/19094/ -e 's/\"threads\"/\"max_requests_in_flight\": 1024, \"threads\"/' > \$BENCH_RUNDIR/a.json && exec /work/main/build-release/gatherd -c \$BENCH_RUNDIR/a.json" | tee /work/exp/scale4.md
