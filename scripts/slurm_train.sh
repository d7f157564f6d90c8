#!/bin/bash
# Multi-node training under SLURM: srun starts one task per GPU on every node, each running the same
# `nbp train fit`; Lightning reads SLURM's environment (ranks, node list) and the first node of the job
# is the rendezvous host. Resubmitting the job (or --requeue after a node failure) resumes from the
# newest complete checkpoint, because the command always passes --ckpt_path last.
#
#   sbatch --nodes 8 scripts/slurm_train.sh --config configs/nbp/ucf101_base.yaml \
#          --config configs/scale/ucf101_base_64gpu.yaml
#
# trainer.num_nodes and trainer.devices are set from the allocation, so they always agree with it.
#SBATCH --job-name=nbp-train
#SBATCH --nodes=8
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --signal=SIGUSR1@120
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: sbatch [--nodes N] scripts/slurm_train.sh --config MODEL.yaml [--config SCALE.yaml] [overrides]" >&2
    exit 2
fi

NODES="${SLURM_JOB_NUM_NODES:-1}"
GPUS_PER_NODE="${SLURM_NTASKS_PER_NODE:-8}"
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-8}"
export NCCL_ASYNC_ERROR_HANDLING=1   # a dead rank aborts the others instead of hanging them

echo "nbp: ${NODES} node(s) x ${GPUS_PER_NODE} GPU(s), master $(scontrol show hostnames "${SLURM_JOB_NODELIST:-localhost}" | head -n 1)"

# One task per GPU; Lightning's SLURM environment maps SLURM_PROCID / SLURM_LOCALID to ranks.
# SIGUSR1 (sent 120 s before the time limit) makes Lightning save a checkpoint and requeue the job.
srun --kill-on-bad-exit=1 nbp train fit "$@" \
    --trainer.num_nodes "${NODES}" \
    --trainer.devices "${GPUS_PER_NODE}" \
    --ckpt_path last
