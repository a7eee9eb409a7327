#!/bin/bash
# tgt.sh NAME ADMINPORT VARIANT [BIN]: renders the profile config with a variant, execs gatherd
name=$1 admin=$2 variant=$3 bin=${4:-/work/main/build-release/gatherd}
tpl=/work/main/tests/bench/gatherd-profile.json.in
case $variant in
  base) f=cat ;;
  unix) f="sed s|host=\${PGHOST}|host=\${PGSOCKET}|" ;;
  depth16) f='sed s|"pool_size":.16|"pool_size":16,"pipeline_depth":16|' ;;
  t1) f=cat; post='s/"threads": [0-9]*/"threads": 1/' ;;
  depth1) f='sed s|"pool_size":.16|"pool_size":16,"pipeline_depth":1|' ;;
esac
$f < $tpl | envsubst | sed -e "s/19093/$admin/" -e "${post:-s/^//}" > $BENCH_RUNDIR/$name.json
grep -q postgres $BENCH_RUNDIR/$name.json || exit 1
exec ${PRE:-} $bin -c $BENCH_RUNDIR/$name.json
