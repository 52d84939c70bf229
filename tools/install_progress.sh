# Progress filters of tools/install_env.sh (sourced by it, and by
# tests/test_progress.py on captured sample lines): what a person waiting for
# the install sees of pip's downloads and of the mmcv build.

# pip's noise: "Requirement already satisfied" lines, index banners, and the
# harmless "Location ... is ignored" warnings some machines print.
PIP_NOISE="^(WARNING: Location '.*' is ignored|Requirement already satisfied: |Looking in (indexes|links): )"

# install_env.sh's log() ("[install_env  12s] ..."), or a plain one here.
declare -F log >/dev/null || log() { printf '[install_env] %s\n' "$*"; }

# stdin: pip's output. Drops $PIP_NOISE; prints a download of >= 10 MB every 10 %.
pip_filter() {
    local line cur tot pct last=0 prev=0
    while IFS= read -r line; do
        if [[ "$line" =~ ^Progress\ ([0-9]+)\ of\ ([0-9]+)$ ]]; then
            cur=${BASH_REMATCH[1]} tot=${BASH_REMATCH[2]}
            if (( cur < prev )); then last=0; fi  # the next file
            prev=$cur
            (( tot >= 10000000 )) || continue  # pip's MB: 10^6 bytes
            pct=$(( cur * 100 / tot / 10 * 10 ))
            if (( pct > last )); then
                last=$pct
                printf '    downloaded %3d %% of %d MB\n' "$pct" "$(( tot / 1000000 ))"
            fi
        elif [[ ! "$line" =~ $PIP_NOISE ]]; then
            printf '%s\n' "$line"
            if [[ "$line" =~ ^[[:space:]]*Downloading ]]; then last=0 prev=0; fi
        fi
    done
    return 0
}

# The sources mmcv's setup.py compiles: $1 its source folder, $2 1 for CUDA ops.
mmcv_source_count() {
    local d="$1/mmcv/ops/csrc/pytorch" files
    files=("$d"/*.cpp "$d"/cpu/*.cpp)
    if [[ "$2" == 1 ]]; then files+=("$d"/cuda/*.cu "$d"/cuda/*.cpp); fi
    local n=0 f
    for f in "${files[@]}"; do
        if [[ -e "$f" ]]; then n=$((n + 1)); fi  # an unmatched glob stays literal
    done
    printf '%s' "$n"
}

# stdin: the verbose mmcv build. Prints "i/N sources compiled" with an ETA: from
# ninja's "[i/N]" lines (torch's extension builder uses ninja when it is on PATH),
# else one compiler call ("... -c x.cpp|x.cu ...") per source, out of $1; and
# compiler errors. Everything else is only in the build log.
mmcv_build_progress() {
    local total="$1" line n=0 t0=$SECONDS dt eta
    while IFS= read -r line; do
        if [[ "$line" =~ ^[[:space:]]*\[([0-9]+)/([0-9]+)\][[:space:]] ]]; then  # pip -v indents
            n=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]}
        elif [[ "$line" =~ [[:space:]]-c[[:space:]]+[^[:space:]]+\.(cpp|cu)([[:space:]]|$) ]]; then
            n=$((n + 1))
        else
            if [[ "$line" =~ (error:|Error [0-9]) ]]; then printf '%s\n' "$line"; fi
            continue
        fi
        dt=$((SECONDS - t0)) eta="ETA unknown"
        if (( n >= total )); then eta="linking next"
        elif (( dt > 0 )); then eta="ETA ~$(( (dt * (total - n) / n + 30) / 60 )) min"; fi
        log "mmcv build: $n/$total sources compiled ($(( 100 * n / (total > 0 ? total : 1) )) %), $eta"
    done
    return 0
}

