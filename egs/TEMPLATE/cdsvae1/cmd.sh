# Job backends used by cdsvae.sh; choose with cmd_backend=local|slurm (edit here, or
# `cmd_backend=slurm ./run.sh`).  Each *_cmd is a launcher with the interface
#     $cmd [--gpu N] [JOB=1:N] LOGFILE command args...
# train_cmd: general jobs (data preparation, statistics)
# cpu_cmd:   CPU-heavy job arrays of --nj jobs (features, voice conversion) and scoring
# gpu_cmd:   training (cdsvae.sh adds --gpu <ngpu>), extraction and the video judge (--gpu 0 or 1)
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        # Local processes; --mem/--time/--gpu are ignored.  Add --max-jobs-run N to limit
        # how many jobs of an array run at once.
        train_cmd="utils/run_local.sh"
        cpu_cmd="utils/run_local.sh"
        gpu_cmd="utils/run_local.sh"
        ;;
    slurm)
        # sbatch job arrays; see the header of utils/run_slurm.sh.  Site options such as
        # the account or partition go into --sbatch-opts or --partition.
        train_cmd="utils/run_slurm.sh --mem 4G --time 4:00:00"
        cpu_cmd="utils/run_slurm.sh --mem 4G --time 4:00:00"
        gpu_cmd="utils/run_slurm.sh --mem 32G --time 48:00:00 --num-threads 8"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (expected local or slurm)" >&2
        return 1
        ;;
esac
