#!/usr/bin/env bash
# The svamp-paper study in several sittings on machines that keep nothing between them.
#
# A sweep resumes from its run folder, but a fresh machine has none. This script keeps what the
# report needs of every finished run (training metrics and settings, the evaluation and its
# per-problem predictions: about 0.2 MB a run; not the adapters) under runs/ beside it, and puts
# it back into a fresh home, where the sweep then counts those runs as done.
#
#   docs/results/svamp-paper/sittings.sh restore   # build the dataset, put the kept runs back
#   cot-factory sweep recipes/svamp-paper.yaml ...  # this sitting's share
#   docs/results/svamp-paper/sittings.sh archive   # keep every evaluated run, then commit runs/
#
# The home is $COT_FACTORY_HOME, holding this study alone; the command is $CF (default
# .venv/bin/cot-factory) and the recipe $RECIPE (default recipes/svamp-paper.yaml), run from the
# project root. A run trained but not yet evaluated is not kept: the next sitting trains it again.
# Each run is kept, and the whole tree restored, by copying into a `.partial` folder renamed into
# place, so a kill at any point leaves no half-copied run behind.
set -euo pipefail
shopt -s nullglob
kept="$(cd "$(dirname "$0")" && pwd)/runs"
cf=${CF:-.venv/bin/cot-factory}
recipe=${RECIPE:-recipes/svamp-paper.yaml}
home=${COT_FACTORY_HOME:?set COT_FACTORY_HOME to the study home}

run_folder() {
  "$cf" build "$recipe" --home "$home" >/dev/null
  local found=("$home"/runs/*/)
  if [ "${#found[@]}" -ne 1 ] || [ ! -d "${found[0]}" ]; then
    echo "expected the study's run folder alone in $home/runs, found: ${found[*]}" >&2
    exit 1
  fi
  echo "${found[0]%/}"
}

case "${1:-}" in
  restore)
    run=$(run_folder)
    folders=("$kept"/*/)
    [ "${#folders[@]}" -gt 0 ] || { echo "nothing kept yet in $kept"; exit 0; }
    for folder in "${folders[@]%/}"; do
      if [ "$(basename "$folder")" != "$(basename "$run")" ]; then
        echo "$folder was kept from another build than $run (the recipe or its data changed)" >&2
        exit 1
      fi
    done
    if [ -e "$run/students" ]; then
      echo "$run/students exists already: restore into a fresh home" >&2
      exit 1
    fi
    rm -rf "$run/.students.partial"
    cp -r "$kept/$(basename "$run")/students" "$run/.students.partial"
    # a run an archive was killed while keeping is not restored
    find "$run/.students.partial" -mindepth 1 -name '*.partial' -prune -exec rm -rf {} +
    mv "$run/.students.partial" "$run/students"
    echo "restored $(find "$run/students" -name eval_results.json | wc -l) evaluations into $run"
    ;;
  archive)
    run=$(run_folder)
    count=0
    [ ! -d "$kept" ] || find "$kept" -name '*.partial' -prune -exec rm -rf {} +
    while IFS= read -r result; do
      # the unit kept whole: a trained run's seed folder, or the base model's evaluation folder
      unit=$(dirname "$result")
      [ "$(basename "$unit")" != eval ] || unit=$(dirname "$unit")
      target="$kept/$(basename "$run")/${unit#"$run"/}"
      mkdir -p "$target.partial"
      find "$unit" -maxdepth 1 -type f \( -name '*.json' -o -name '*.jsonl' \) \
        -exec cp {} "$target.partial/" \;
      [ ! -d "$unit/eval" ] || cp -r "$unit/eval" "$target.partial/"
      rm -rf "$target"
      mv "$target.partial" "$target"
      count=$((count + 1))
    done < <(find "$run/students" -path '*/eval/eval_results.json' -o -path '*/base/eval_results.json')
    echo "kept $count evaluated runs under $kept/$(basename "$run")"
    ;;
  *)
    echo "usage: $0 restore|archive" >&2
    exit 2
    ;;
esac
