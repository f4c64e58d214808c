#!/usr/bin/env bash
# Pipeline.generate (tiny, 16 frames at 128^2, DDIM 50) before this session's argument checks (ed1d247, a worktree
# at /tmp/wt_base) and after (HEAD), alternating three times so that the host's drift falls on both
set -e
source /work/venv/bin/activate
for i in ${RUNS:-1 2 3}; do
  for tree in /tmp/wt_base /work/main; do
    cd $tree
    name=$([ $tree = /work/main ] && echo new || echo old)
    PYTHONPATH=$tree python -c "import nerv_rt; assert nerv_rt.__file__.startswith('$tree'), nerv_rt.__file__"
    PYTHONPATH=$tree python -m pytest -q bench/test_hot_paths.py -k "full_generate and tiny" --benchmark-only \
      --benchmark-json=/tmp/args_${name}_$i.json -p no:cacheprovider > /dev/null
  done
done
