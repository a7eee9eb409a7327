#!/bin/bash
# A/B: the build before (70ba920, in the worktree /work/old) against 390d3b6 (/work/main): fast
# mode with 64 clients, then 10,000 clients in slow mode; release builds, rounds interleaved.
# Results go to /work/exp/.
tgt=/work/main/tests/bench/results/2026-12-04-levers/scripts/tgt.sh
old=/work/old/build-release/gatherd new=/work/main/build-release/gatherd
export MAX_CONNECTIONS=256
bash /work/shared/bench/run.sh -m fast -c 64 -r 3 -d 10 -q 30 -M -o /work/exp/fast.jsonl \
  "old=18093:exec $tgt old 19093 base $old" \
  "new=18094:exec $tgt new 19094 base $new" > /work/exp/fast.md 2>&1
export MAX_CONNECTIONS=8192
ulimit -n "$(ulimit -Hn)"
bash /work/shared/bench/run.sh -m slow -c 10000 -r 4 -d 10 -q 30 -M -o /work/exp/scale.jsonl \
  "old=18093:exec $tgt old 19093 base $old" \
  "new=18094:exec $tgt new 19094 base $new" > /work/exp/scale.md 2>&1
touch /work/exp/ab.done
