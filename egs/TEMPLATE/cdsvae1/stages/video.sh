# The seven stages for --modality video (sourced by cdsvae.sh, which defines the options and
# the helpers used here: log, die, require_tool, check_experiments, ...).
# npy frames and labels -> training (motion views made on the fly) -> judge classifier ->
# judge metrics -> report.

stage_1() {
    prepare_data  # npy frames and label files, used as they are
}

stage_2() {
    log "Skip stage 2: video frames are the model input, there are no features to extract"
}

stage_3() {
    log "Skip stage 3: video motion views are made on the fly by the data loader"
}

# Training (train_experiments in cdsvae.sh) on data/<--train_set>, validated on --dev_set.
stage_4() {
    train_experiments --data.root data --data.train_split "${train_set}" --data.valid_split "${dev_set:-null}"
}

stage_5() {
    log "Stage 5: judge classifier: data/${train_set}, data/${first_test_set} -> ${expdir}/judge/ (log: ${expdir}/judge/train_judge.log)"
    require_tool cdsvae.bin.train_judge
    check_experiments
    hold_lock "${expdir}/judge" "${expdir}/.judge.lock"
    # shellcheck disable=SC2086
    ${gpu_cmd} --gpu "${job_gpus}" "${expdir}/judge/train_judge.log" \
        python -m cdsvae.bin.train_judge --train "data/${train_set}" --test "data/${first_test_set}" \
        --outdir "${expdir}/judge" ${judge_args}
    demo_step --data "data/${first_test_set}"
}

stage_6() {
    log "Stage 6: judge metrics: ${expdir}/<tag>/ + ${expdir}/judge/ -> ${expdir}/<tag>/judge_results.json"
    require_tool cdsvae.bin.judge_eval
    check_experiments
    local tag
    for tag in $(experiment_tags); do
        log "Judging ${tag} (log: ${expdir}/${tag}/judge_eval.log)"
        # shellcheck disable=SC2086
        ${gpu_cmd} --gpu "${job_gpus}" "${expdir}/${tag}/judge_eval.log" \
            python -m cdsvae.bin.judge_eval --expdir "${expdir}/${tag}" --judge_dir "${expdir}/judge" \
            --data "data/${first_test_set}" ${judge_eval_args}
    done
}

stage_7() {
    report_stage video_report
    pack_experiments
}

# The report of stage 7 from the experiment dirs: ${expdir}/RESULTS.md (judge metrics of
# every experiment on the first test set).
video_report() {  # video_report <exp dir>...
    require_tool cdsvae.bin.video_report
    python -m cdsvae.bin.video_report --out "${expdir}/RESULTS.md" "$@"
}
