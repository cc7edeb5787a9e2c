#!/usr/bin/env bash
# layering_test.sh [SOURCE_ROOT] -- nothing includes upward.  The parts are
# layered
#
#     cli -> node -> replicator -> persist -> shm -> include
#
# and a file may include its own part and any part to its right; include/
# includes nothing of ours; examples/ include only "ringkeep.h" and headers
# of their own folder.  An include names its folder ("persist/store.h"; the
# source root is the include path), except "ringkeep.h", the public header
# in include/.  Every `#include "..."` (and `#include <part/...>`) in the
# parts' .c and .h files is checked; tests/ and bench/ are not.  A part that
# does not exist (yet) is skipped.  Prints file:line and the include for
# every violation and exits 1 if there is one.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root"

layers=(cli node replicator persist shm include)
order="cli -> node -> replicator -> persist -> shm -> include"
rank() { # rank PART: its position in layers, or nothing when not a part
    local i
    for i in "${!layers[@]}"; do
        [ "${layers[$i]}" = "$1" ] && echo "$i" && return 0
    done
    return 0
}

bad=0
violation() { # violation FILE LINE TEXT WHY
    echo "layering: $1:$2: $3: $4"
    bad=1
}

check_file() { # check_file PART FILE
    local part=$1 file=$2 line text target folder r_part r_target
    r_part=$(rank "$part")
    # Quoted includes, and angle includes that name one of our parts.
    while IFS=: read -r line text; do
        [[ "$text" =~ include[[:space:]]*[\"\<]([^\">]*) ]]
        target=${BASH_REMATCH[1]}
        if [ "$part" = examples ]; then
            [ "$target" = ringkeep.h ] && continue
            [[ "$target" != */* && -f "$(dirname "$file")/$target" ]] && continue
            violation "$file" "$line" "$text" "examples include only \"ringkeep.h\" and their own headers"
            continue
        fi
        if [ "$part" = include ]; then
            violation "$file" "$line" "$text" "include/ includes nothing of ours"
            continue
        fi
        if [ "$target" = ringkeep.h ]; then
            continue # include/, the rightmost part
        fi
        folder=${target%%/*}
        r_target=$(rank "$folder")
        if [[ "$target" != */* || -z "$r_target" ]]; then
            violation "$file" "$line" "$text" "does not name its folder (one of ${layers[*]})"
            continue
        fi
        if [ "$r_target" -lt "$r_part" ]; then
            violation "$file" "$line" "$text" "$part may not include $folder (upward in $order)"
        fi
    done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*("|<(cli|node|replicator|persist|shm|include|ringkeep\.h)[/>])' "$file" || true)
}

n_files=0
for part in "${layers[@]}" examples; do
    [ -d "$part" ] || continue
    while IFS= read -r file; do
        check_file "$part" "$file"
        n_files=$((n_files + 1))
    done < <(find "$part" -type f \( -name '*.c' -o -name '*.h' \) | sort)
done

if [ "$n_files" -eq 0 ]; then
    echo "layering: no source files under $PWD"
    exit 1
fi
if [ "$bad" -ne 0 ]; then
    echo "layering: FAIL (order: $order; examples -> include only)"
    exit 1
fi
echo "layering: $n_files files, no upward include"
