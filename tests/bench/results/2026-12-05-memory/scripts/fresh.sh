#!/bin/bash
# Slow mode, 10,000 clients, a fresh process per window: old, new, old, new, ... (ROUNDS, 3 by
# default); each window's peak is then its own, not the largest of the windows before it.
tgt=/work/main/tests/bench/results/2026-12-04-levers/scripts/tgt.sh
old=/work/old/build-release/gatherd new=/work/main/build-release/gatherd
export MAX_CONNECTIONS=8192
ulimit -n "$(ulimit -Hn)"
for i in $(seq "${ROUNDS:-3}"); do
  for v in old new; do
    bin=$old; [ $v = new ] && bin=$new
    bash /work/shared/bench/run.sh -m slow -c 10000 -r 1 -d 10 -q 30 -M -o /work/exp/fresh.jsonl \
      "$v=18094:exec $tgt $v 19094 base $bin" >> /work/exp/fresh.md 2>&1
  done
done
touch /work/exp/fresh.done
