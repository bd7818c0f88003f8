#!/bin/bash
# Queue the gates as a job array of N shards, and the merge as a job that starts when all of them have
# ended (afterany: also when a shard failed a gate, so that the merge gives the verdict).
# Run from the project's root (the folder that holds thresholds/): bash examples/ci/slurm-submit.sh
set -euo pipefail
here="$(dirname "$0")"
N=3  # shards (machines); nothing else changes with it

mkdir -p saeval-logs
rm -rf saeval-shards saeval-results  # shards of an earlier submission must not be merged with these
array=$(sbatch --parsable --array="1-$N" --export="ALL,SAEVAL_SHARDS=$N" "$here/slurm-shards.sbatch")
sbatch --dependency="afterany:${array%%;*}" "$here/slurm-merge.sbatch"
