#!/bin/bash
# A sweep on a SLURM allocation: a Ray head on the first node, a Ray worker on every other node, the sweep's driver
# in this batch script; requeued (near the time limit, or by `scontrol requeue <job>`) the job starts over and the
# sweep resumes: finished runs are kept, interrupted ones continue from their last epoch checkpoint.
#
#   sbatch scripts/slurm_sweep.sh configs/revisiting/sweep_study.yaml --gpus-per-trial 0.25
#
# Run it from the repository root on the cluster's shared file system: every node needs the code, the Python
# environment (activate it before sbatch: SLURM passes the environment on), PET_DATA_DIR, the sweep's `out` and its
# `storage_path` (or an s3:// / gs:// storage_path) at the same paths. Size the allocation with sbatch's own flags
# (they override the defaults below), e.g. `sbatch --nodes 2 --gpus-per-node 8 scripts/slurm_sweep.sh ...`.
#
#SBATCH --job-name=pet-sweep
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

config=${1:?usage: sbatch scripts/slurm_sweep.sh <sweep or study file> [python cli.py sweep flags]}
shift
port=${RAY_PORT:-6379}
python=${PYTHON:-python}

mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
head=${nodes[0]}
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head" hostname --ip-address | awk '{print $1}')
address="$head_ip:$port"
cpus=${SLURM_CPUS_PER_TASK:-1}
gpus=${SLURM_GPUS_ON_NODE:-0}
echo "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}): Ray head on $head ($address), ${#nodes[@]} node(s)"

# Near the time limit SLURM sends USR1 (--signal above): put the job back in the queue. The sweep is killed with
# the job; the requeued job runs this script again and the same sweep command resumes it.
requeue() {
    echo "time limit near: requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
}
trap requeue USR1

srun --nodes=1 --ntasks=1 -w "$head" ray start --head --node-ip-address="$head_ip" --port="$port" \
    --num-cpus="$cpus" --num-gpus="$gpus" --block &
for _ in $(seq 60); do
    if ray status --address "$address" > /dev/null 2>&1; then break; fi
    sleep 5
done
workers=$((${#nodes[@]} - 1))
if ((workers > 0)); then
    srun --nodes="$workers" --ntasks="$workers" --exclude="$head" \
        ray start --address "$address" --num-cpus="$cpus" --num-gpus="$gpus" --block &
fi

# In the background, so that the USR1 trap runs as soon as the signal comes (bash runs traps between commands).
"$python" cli.py sweep --config "$config" --address "$address" "$@" &
sweep=$!
status=0
wait "$sweep" || status=$?
# A trapped signal ends `wait` early (status > 128) while the sweep goes on until SLURM stops the job.
while ((status > 128)) && kill -0 "$sweep" 2> /dev/null; do
    status=0
    wait "$sweep" || status=$?
done
exit "$status"
