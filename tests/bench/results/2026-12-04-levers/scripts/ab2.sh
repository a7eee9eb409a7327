#!/bin/bash
# A/B: gatherd default, pipeline_depth 16, Postgres over the Unix socket, one thread; node over TCP and over the Unix socket
export MAX_CONNECTIONS=256
out=${OUT:-/work/exp/ab2}
bash /work/shared/bench/run.sh -m fast -c 64 -r ${ROUNDS:-2} -d 10 -q ${QUIET:-30} -M -o $out.jsonl \
  "base=18093:exec /work/exp/tgt.sh base 19093 base" \
  "depth16=18094:exec /work/exp/tgt.sh depth16 19094 depth16" \
  "unix=18095:exec /work/exp/tgt.sh unix 19095 unix" \
  "t1=18096:exec /work/exp/tgt.sh t1 19096 t1" \
  node \
  "nodeunix=18097:cd \$BENCH_DIR/peers/node && PGHOST=\$PGSOCKET exec node server.js" | tee $out.md
