#!/bin/bash
# A/B: glibc's default arenas (one per thread) against one arena (MALLOC_ARENA_MAX=1); fast mode, then 10,000 clients in slow mode
export MAX_CONNECTIONS=256
bash /work/shared/bench/run.sh -m fast -c 64 -r 2 -d 10 -q 30 -M -o /work/exp/arena-fast.jsonl \
  "base=18093:exec /work/exp/tgt.sh base 19093 base" \
  "arena1=18094:PRE='env MALLOC_ARENA_MAX=1' exec /work/exp/tgt.sh arena1 19094 base" \
  node > /work/exp/arena-fast.md 2>&1
export MAX_CONNECTIONS=8192
ulimit -n "$(ulimit -Hn)"
tpl=/work/main/tests/bench/gatherd-profile.json.in
bash /work/shared/bench/run.sh -m slow -c 10000 -r 2 -d 10 -q 30 -M -o /work/exp/arena-scale.jsonl \
  "base=18093:envsubst < $tpl > \$BENCH_RUNDIR/b.json && exec /work/main/build-release/gatherd -c \$BENCH_RUNDIR/b.json" \
  "arena1=18094:envsubst < $tpl | sed s/19093/19094/ > \$BENCH_RUNDIR/a.json && MALLOC_ARENA_MAX=1 exec /work/main/build-release/gatherd -c \$BENCH_RUNDIR/a.json" > /work/exp/arena-scale.md 2>&1
touch /work/exp/arena.done
