# The seven stages for --modality speech (sourced by cdsvae.sh, which defines the options and
# the helpers used here: log, die, require_tool, fingerprint, is_done, mark_done, ...).
# Kaldi data dirs -> log-mel features -> WORLD voice-converted copies -> training -> s and z
# embeddings -> speaker-verification scores (EER/minDCF) -> report.

stage_1() {
    prepare_data
    local dset
    for dset in $(data_sets); do
        # --skip_bad true: a missing audio file is counted here and its utterance skipped in stage 2
        utils/validate_data_dir.sh $([ "${skip_bad}" = true ] && echo --allow-missing-audio) "data/${dset}" \
            || die "data/${dset} is not a valid data dir (problems listed above)"
    done
}

stage_2() {
    hold_lock "${dumpdir}" "${dumpdir}/.lock"
    log "Stage 2: features: data/{$(data_sets | tr ' ' ',')} -> ${dumpdir}/<set>/ (${feats_conf}; CMVN stats of ${train_set})"
    require_tool cdsvae.bin.make_fbank cdsvae.bin.compute_cmvn_stats
    [ -f "${feats_conf}" ] || die "feature config ${feats_conf} not found"
    local dset n out fp
    for dset in $(data_sets); do
        out=${dumpdir}/${dset}
        fp=$(fingerprint "data/${dset}/wav.scp" "data/${dset}/utt2spk" "data/${dset}/segments" \
            "${feats_conf}" "skip_bad=${skip_bad}")
        if is_done "${out}" "${fp}" && { [ "${dset}" != "${train_set}" ] || [ -f "${out}/cmvn.npz" ]; }; then
            log "Features of ${dset} are up to date (same data and options): ${out}"
            continue
        fi
        rm -f "${out}/.done"
        n=$(split_for_jobs "data/${dset}")
        log "Features of ${dset}: ${n} job(s), logs: ${out}/log/make_fbank.*.log"
        ${cpu_cmd} JOB=1:"${n}" "${out}/log/make_fbank.JOB.log" \
            python -m cdsvae.bin.make_fbank --config "${feats_conf}" --skip_bad "${skip_bad}" --job JOB \
            "data/${dset}/split${n}/JOB" "${out}"
        python -m cdsvae.bin.make_fbank --merge --nj "${n}" "data/${dset}" "${out}"
        report_skipped "${out}/bad_utts" "data/${dset}" "unreadable audio"
        utils/validate_data_dir.sh --no-check-audio "${out}" || die "${out} is not a valid data dir (problems listed above)"
        if [ "${dset}" = "${train_set}" ]; then
            python -m cdsvae.bin.compute_cmvn_stats "${out}/feats.scp" "${out}/cmvn.npz"
        fi
        mark_done "${out}" "${fp}"
    done
}

stage_3() {
    local src=${dumpdir}/${train_set} out=${dumpdir}/${train_set}_vc n
    hold_lock "${dumpdir}" "${dumpdir}/.lock"
    log "Stage 3: motion augmentation: ${src} -> ${out}/copy*/ (WORLD voice conversion; ${vc_conf})"
    require_tool cdsvae.bin.world_vc
    [ -f "${src}/feats.scp" ] || die "${src}/feats.scp not found: run stage 2 first"
    [ -f "${vc_conf}" ] || die "voice-conversion config ${vc_conf} not found"
    local fp
    fp=$(fingerprint "${src}/feats.scp" "${src}/fbank.yaml" "${vc_conf}" "skip_bad=${skip_bad}")
    if is_done "${out}" "${fp}"; then
        log "Voice-converted features are up to date (same features and options): ${out}"
        return
    fi
    rm -f "${out}/.done"
    n=$(split_for_jobs "${src}")
    log "Voice conversion of ${train_set}: ${n} job(s), logs: ${out}/log/world_vc.*.log"
    ${cpu_cmd} JOB=1:"${n}" "${out}/log/world_vc.JOB.log" \
        python -m cdsvae.bin.world_vc --vc_config "${vc_conf}" --fbank_config "${src}/fbank.yaml" \
        --skip_bad "${skip_bad}" --job JOB "${src}/split${n}/JOB" "${out}"
    python -m cdsvae.bin.world_vc --vc_config "${vc_conf}" --merge --nj "${n}" "${src}" "${out}"
    report_skipped "${out}/copy1/bad_utts" "${src}" "voice conversion failed"
    mark_done "${out}" "${fp}"
}

# Training (train_experiments in cdsvae.sh) on the features of --train_set under --dumpdir,
# their CMVN statistics and voice-converted copies, validated on --dev_set's features.
stage_4() {
    local train=${dumpdir}/${train_set} valid="--data.valid_split null"
    [ -z "${dev_set}" ] || valid="--data.valid_split dev --data.dev_feats ${dumpdir}/${dev_set}"
    train_experiments --data.train_split train --data.train_feats "${train}" --data.cmvn "${train}/cmvn.npz" \
        --data.motion_feats "${train}_vc" --data.skip_bad "${skip_bad}" "${valid}"
}

# The content judge and every content figure need unit transcripts (data/<set>/units, written by
# local/data.sh from the transcripts) of --train_set and of the first test set; a corpus without
# them is judged for its speakers alone.  Prints why content is not judged, or nothing.
content_not_judged() {
    local dset
    for dset in "${train_set}" "${first_test_set}"; do
        if [ ! -s "data/${dset}/units" ]; then
            echo "data/${dset}/units is missing or empty (no transcripts)"
            return
        fi
    done
}

# The judges of this run: speaker and content, or the speaker alone (with one line saying why).
judged_kinds=()
choose_judges() {
    local why
    judged_kinds=(speaker content)
    why=$(content_not_judged)
    if [ -n "${why}" ]; then
        judged_kinds=(speaker)
        log "Content is not judged: ${why}; the speaker judge and every speaker-side figure are kept"
    fi
}

# The speaker and content judges of the recipe, trained on --train_set (or the pretrained speaker
# judge of --speaker_judge) and evaluated on the first test set: start_judges starts them in the
# background (they need no experiment, so stage 5 extracts the embeddings meanwhile),
# finish_judges waits for them and stops the stage when a judge misses its gate in --judge_conf.
judge_pids=()
start_judges() {
    if [ "${judges}" = false ]; then
        log "Judges: skipped (--judges false)"
        return
    fi
    require_tool cdsvae.bin.train_speech_judge
    [ -f "${judge_conf}" ] || die "judge config ${judge_conf} not found (or run with --judges false)"
    [ -z "${unit_map}" ] || [ -f "${unit_map}" ] || die "unit map ${unit_map} not found (--unit_map)"
    hold_lock "${expdir}/judge" "${expdir}/.judge.lock"
    choose_judges
    local train=${dumpdir}/${train_set} test=${dumpdir}/${first_test_set} which out
    for which in "${judged_kinds[@]}"; do
        out=${expdir}/judge/${which}
        log "Judge of ${which}: ${train} -> ${out}/ (log: ${out}/train.log)"
        # shellcheck disable=SC2086
        ${gpu_cmd} --gpu "${job_gpus}" "${out}/train.log" \
            python -m cdsvae.bin.train_speech_judge --judge "${which}" --config "${judge_conf}" \
            --train_feats "${train}" --train_data "data/${train_set}" --test_feats "${test}" \
            --test_data "data/${first_test_set}" --outdir "${out}" --device "${device}" \
            ${unit_map:+--unit_map "${unit_map}"} ${speaker_judge:+--external "${speaker_judge}"} &
        judge_pids+=("$!")
    done
}

finish_judges() {
    [ "${judges}" = true ] || return 0
    local k failed=()
    for k in "${!judge_pids[@]}"; do
        wait "${judge_pids[${k}]}" || failed+=("${expdir}/judge/${judged_kinds[${k}]}/train.log")
    done
    [ ${#failed[@]} -eq 0 ] || die "judge training failed; see ${failed[*]}"
    python -m cdsvae.bin.train_speech_judge --check --config "${judge_conf}" --judge_dir "${expdir}/judge" \
        --test_data "data/${first_test_set}" --content "$(content_option)" \
        || die "a judge missed its gate (above); the judges are kept in ${expdir}/judge"
}

# true when this run judges content (choose_judges), for the --content option of the tools.
content_option() {
    [ "${#judged_kinds[@]}" -eq 2 ] && echo true || echo false
}

stage_5() {
    local tag dset subset out n_skipped
    # experiments trained on other inputs are refused before any judge is trained
    check_experiments $(for dset in ${test_sets} ${train_set}; do echo "${dumpdir}/${dset}"; done)
    start_judges
    log "Stage 5: extraction: ${dumpdir}/{${test_sets// /,},${train_set}} -> ${expdir}/<tag>/emb_<set>/ (s and z embeddings; at most ${norm_max_utts} utterances of ${train_set}, for the mean of mean-normalised scoring)"
    require_tool cdsvae.bin.extract_embeddings
    for tag in $(experiment_tags); do
        for dset in ${test_sets} ${train_set}; do
            subset=""
            [ "${dset}" != "${train_set}" ] || subset="--max_utts ${norm_max_utts}"
            out=${expdir}/${tag}/emb_${dset}
            log "Embedding ${dset} with ${tag} (log: ${out}/extract.log)"
            # shellcheck disable=SC2086
            ${gpu_cmd} --gpu "${job_gpus}" "${out}/extract.log" \
                python -m cdsvae.bin.extract_embeddings --expdir "${expdir}/${tag}" --feats "${dumpdir}/${dset}" \
                --outdir "${out}" --skip_bad "${skip_bad}" ${subset} --device "${device}"
            n_skipped=$(json_int "${out}/meta.json" n_skipped)
            [ "${n_skipped:-0}" -eq 0 ] || log "Skipped ${n_skipped} utterance(s) of ${dumpdir}/${dset} at extraction" \
                "(shorter than one segment; --skip_bad true): listed in ${out}/meta.json"
        done
    done
    finish_judges
    if [ "${judges}" = true ]; then
        demo_step --set "${first_test_set}" --feats "${dumpdir}/${first_test_set}" --judge_dir "${expdir}/judge" \
            --data "data/${first_test_set}" --content "$(content_option)" ${unit_map:+--unit_map "${unit_map}"}
    else
        demo_step --set "${first_test_set}" --feats "${dumpdir}/${first_test_set}"
    fi
}

stage_6() {
    log "Stage 6: scoring: ${expdir}/<tag>/emb_<set>/ -> ${expdir}/<tag>/score_<set>/ (trials, cosine scores raw and mean-normalised with emb_${train_set}, EER/minDCF)"
    require_tool cdsvae.bin.score
    check_experiments
    local tag dset out n_missing
    for tag in $(experiment_tags); do
        [ -f "${expdir}/${tag}/emb_${train_set}/s.scp" ] || die "${expdir}/${tag}/emb_${train_set}/s.scp not found: run stage 5 first"
        for dset in ${test_sets}; do
            out=${expdir}/${tag}/score_${dset}
            log "Scoring ${dset} with ${tag} (log: ${out}/score.log)"
            local trials_opts=()
            [ -z "${trials}" ] || [ "${dset}" != "${first_test_set}" ] \
                || trials_opts=(--trials "${trials}" --trials_format "${trials_format}")
            ${cpu_cmd} "${out}/score.log" \
                python -m cdsvae.bin.score --emb_dir "${expdir}/${tag}/emb_${dset}" \
                --utt2spk "data/${dset}/utt2spk" --outdir "${out}" \
                --mean_from "${expdir}/${tag}/emb_${train_set}" "${trials_opts[@]}"
            n_missing=$(json_int "${out}/results.json" n_without_embedding)
            [ "${n_missing:-0}" -eq 0 ] || log "Left ${n_missing} utterance(s) of data/${dset} without embedding" \
                "(skipped in stages 2-5) out of the trials: listed in ${out}/results.json"
        done
    done
    disentangle_experiments
}

# Probes and judged swaps of every experiment on the first test set, --train_jobs at a time on
# the CPU (--ngpu at a time on GPUs, one GPU each), with the judges of stage 5.
disentangle_experiments() {
    if [ "${judges}" = false ]; then
        log "Disentanglement metrics: skipped (--judges false)"
        return
    fi
    require_tool cdsvae.bin.disentangle
    choose_judges
    local tag out pids=() tags=() k failed=() jobs=$((ngpu > 0 ? ngpu : train_jobs)) what="CTC probes of z and s, judged swaps"
    for which in "${judged_kinds[@]}"; do
        [ -f "${expdir}/judge/${which}/judge.json" ] || die "${expdir}/judge/${which}/judge.json not found: run stage 5 first"
    done
    [ "$(content_option)" = true ] || what="swaps judged for the speaker"
    for tag in $(experiment_tags); do
        out=${expdir}/${tag}/disentangle_${first_test_set}
        log "Disentanglement of ${tag} on ${first_test_set}: ${what} (log: ${out}/disentangle.log)"
        # shellcheck disable=SC2086
        ${gpu_cmd} --gpu "${job_gpus}" "${out}/disentangle.log" \
            python -m cdsvae.bin.disentangle --expdir "${expdir}/${tag}" --judge_dir "${expdir}/judge" \
            --config "${judge_conf}" --train_feats "${dumpdir}/${train_set}" --train_data "data/${train_set}" \
            --test_feats "${dumpdir}/${first_test_set}" --test_data "data/${first_test_set}" --outdir "${out}" \
            --device "${device}" --content "$(content_option)" ${unit_map:+--unit_map "${unit_map}"} &
        pids+=("$!")
        tags+=("${tag}")
        while [ "$(jobs -rp | wc -l)" -ge "${jobs}" ]; do sleep 1; done
    done
    for k in "${!pids[@]}"; do
        wait "${pids[${k}]}" || failed+=("${expdir}/${tags[${k}]}/disentangle_${first_test_set}/disentangle.log")
    done
    [ ${#failed[@]} -eq 0 ] || die "disentanglement metrics failed; see ${failed[*]}"
}

stage_7() {
    report_stage speech_report
    pack_experiments
}

# The reports of stage 7 from the experiment dirs: ${expdir}/RESULTS.md for the first test
# set, ${expdir}/RESULTS_<set>.md for the others (and each experiment's own RESULTS.md, plots
# linking the listening demo of stage 5, written by make_report).
speech_report() {  # speech_report <exp dir>...
    require_tool cdsvae.bin.make_report
    local dset out
    for dset in ${test_sets}; do
        out=${expdir}/RESULTS.md
        [ "${dset}" = "${first_test_set}" ] || out=${expdir}/RESULTS_${dset}.md
        python -m cdsvae.bin.make_report --expdirs "$@" --set "${dset}" --out "${out}"
    done
}
