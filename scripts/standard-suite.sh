#!/usr/bin/env bash
# The standard allocator suite: runs the benchmark programs of daanx/mimalloc-bench (built
# from its bench/ folder, see docs) under glibc (no preload), swmalloc and any other
# allocator given, and prints Markdown tables of time and max-RSS ratios.
#
#   scripts/standard-suite.sh --bench DIR [--inputs DIR] [--rounds N] [--procs N]
#       [--allocator NAME=PATH]... [--tests "t1 t2 ..."] [--raw FILE] [--timeout S]
#
#   --bench DIR    the built programs (mimalloc-bench's out/bench)
#   --inputs DIR   mimalloc-bench's bench/ folder, for espresso/largest.espresso and
#                  barnes/input (default: DIR/../../bench, the layout of a checkout)
#   --rounds N     rounds (default 3); in each round every test runs once per allocator,
#                  the allocators taking turns (the order rotates from round to round)
#   --procs N      thread count where bench.sh uses $procs (default: nproc)
#   --allocator NAME=PATH   also run with LD_PRELOAD=PATH (repeatable; swmalloc=PATH
#                  replaces the default .build/release/libswmalloc.so)
#   --tests "..."  test names as in bench.sh's output (default: all in cmd() below whose program
#                  was built)
#   --raw FILE     raw results as TSV: test allocator round seconds maxrss_kb status wall_s
#                  (default: ./standard-suite-raw.tsv)
#   --timeout S    a run taking longer is killed and reported as timeout (default 600)
#
# Each run is timed with /usr/bin/time -f '%e %M' (elapsed seconds, max RSS in KiB).
# seconds is that elapsed time, except for the tests that run for a fixed time and report a
# rate (larsonN, larsonN-sized, rptestN, xmalloc-testN, glibc-thread): there it is the
# relative time bench.sh computes (larson's and xmalloc-test's own, 2e6 / rptest's ops,
# 1e9 / glibc-thread's iterations); wall_s in the raw file is always the elapsed time.
# A run that exits non-zero, dies, times out or prints no rate is reported as FAIL (with
# the command to reproduce it on stderr). Table cells: median over rounds / best median of
# the row.
# Needs bash, coreutils, awk and GNU time (Debian package `time`).
set -euo pipefail

bench="" inputs="" rounds=3 procs=$(nproc) tests="" raw=standard-suite-raw.tsv limit=600
names=(glibc swmalloc)
libs=("" "$(cd "$(dirname "$0")/.." && pwd)/.build/release/libswmalloc.so")
die() { echo "standard-suite: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bench) bench=$2; shift;;
    --inputs) inputs=$2; shift;;
    --rounds) rounds=$2; shift;;
    --procs) procs=$2; shift;;
    --tests) tests=$2; shift;;
    --raw) raw=$2; shift;;
    --timeout) limit=$2; shift;;
    --allocator)
      name=${2%%=*} path=${2#*=}
      [[ "$2" == *=* && "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "--allocator wants NAME=PATH"
      if [ "$name" = swmalloc ]; then libs[1]=$path
      elif [ "$name" = glibc ]; then die "glibc is always run, without a preload"
      else names+=("$name"); libs+=("$path"); fi
      shift;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) die "unknown argument $1 (see --help)";;
  esac
  shift
done
[ -n "$bench" ] && [ -d "$bench" ] || die "--bench DIR is required"
bench=$(cd "$bench" && pwd)
inputs=$(cd "${inputs:-$bench/../../bench}" && pwd) || die "no inputs folder (--inputs)"
[ -x /usr/bin/time ] || die "/usr/bin/time missing (apt-get install time)"
raw=$(cd "$(dirname "$raw")" && pwd)/$(basename "$raw")   # absolute: the runs cd to --bench
for lib in "${libs[@]:1}"; do [ -f "$lib" ] || die "no allocator library at $lib"; done

# The command line of each test, as in mimalloc-bench's bench.sh.
cmd() {
  case "$1" in
    cfrac) echo "cfrac 17545186520507317056371138836327483792789528";;
    espresso) echo "espresso $inputs/espresso/largest.espresso";;
    barnes) echo "barnes";;   # reads barnes/input on stdin
    larsonN) echo "larson 5 8 1000 5000 100 4141 $procs";;
    larsonN-sized) echo "larson-sized 5 8 1000 5000 100 4141 $procs";;
    mstressN) echo "mstress $procs 50 25";;
    rptestN) echo "rptest $procs 0 1 2 500 1000 100 8 16000";;
    alloc-test1) echo "alloc-test 1";;
    alloc-testN) echo "alloc-test $((procs > 16 ? 16 : procs))";;
    sh6benchN) echo "sh6bench $((procs * 2))";;
    sh8benchN) echo "sh8bench $((procs * 2))";;
    xmalloc-testN) echo "xmalloc-test -w $procs -t 5 -s 64";;
    cache-scratch1) echo "cache-scratch 1 1000 1 2000000 $procs";;
    cache-scratchN) echo "cache-scratch $procs 1000 1 2000000 $procs";;
    cache-thrash1) echo "cache-thrash 1 1000 1 2000000 $procs";;
    cache-thrashN) echo "cache-thrash $procs 1000 1 2000000 $procs";;
    malloc-large) echo "malloc-large";;
    glibc-simple) echo "glibc-simple";;
    glibc-thread) echo "glibc-thread $procs";;
    mleak10) echo "mleak 5";;
    mleak100) echo "mleak 50";;
    *) return 1;;
  esac
}
all="cfrac espresso barnes larsonN larsonN-sized mstressN rptestN alloc-test1 alloc-testN
  sh6benchN sh8benchN xmalloc-testN cache-scratch1 cache-scratchN cache-thrash1 cache-thrashN
  malloc-large glibc-simple glibc-thread mleak10 mleak100"
if [ -z "$tests" ]; then
  for t in $all; do
    c=$(cmd "$t"); [ -x "$bench/${c%% *}" ] && tests+=" $t" || echo "skip $t: not built" >&2
  done
fi
for t in $tests; do
  c=$(cmd "$t") || die "unknown test $t"
  [ -x "$bench/${c%% *}" ] || die "$bench/${c%% *} missing"
done

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf 'test\tallocator\tround\tseconds\tmaxrss_kb\tstatus\twall_s\n' > "$raw"
n=${#names[@]}
cd "$bench"
for ((r = 1; r <= rounds; r++)); do
  for t in $tests; do
    for ((k = 0; k < n; k++)); do
      i=$(( (k + r - 1) % n )) a=${names[i]}
      stdin=/dev/null; [ "$t" = barnes ] && stdin=$inputs/barnes/input
      preload=(); [ -n "${libs[i]}" ] && preload=("LD_PRELOAD=${libs[i]}")
      rc=0
      /usr/bin/time -o "$tmp/time" -f '%e %M' timeout -k 10 "$limit" \
        env "${preload[@]}" ./$(cmd "$t") < "$stdin" > "$tmp/out" 2>&1 || rc=$?
      read -r wall rss < <(tail -n 1 "$tmp/time") || true
      secs=$wall
      case "$t" in
        larsonN*) secs=$(sed -n 's/.* time: \([0-9.]*\).*/\1/p' "$tmp/out");;
        rptestN) secs=$(sed -n 's/.*\.\.\.\([0-9]*\) memory ops.*/\1/p' "$tmp/out" |
          awk '$1 > 0 { printf "%.3f", 2e6 / $1 }');;
        xmalloc-testN) secs=$(sed -n 's/^rtime: \([0-9.]*\).*/\1/p' "$tmp/out");;
        glibc-thread) secs=$(awk '/iterations/ && $1 > 0 { printf "%.3f", 1e9 / $1 }' "$tmp/out");;
      esac
      if [ $rc -eq 0 ] && [ -n "$secs" ]; then status=ok
      elif [ $rc -eq 0 ]; then status=no-result
      elif [ $rc -eq 124 ]; then status=timeout
      elif [ $rc -gt 128 ]; then status=signal-$((rc - 128))
      else status=exit-$rc; fi
      if [ $status != ok ]; then
        secs=NA
        echo "FAIL ($status): $t under $a: (cd $bench && ${preload[*]:-} ./$(cmd "$t") < $stdin)" >&2
        tail -n 5 "$tmp/out" | sed 's/^/  | /' >&2
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$a" "$r" "$secs" "$rss" "$status" "$wall" >> "$raw"
      printf '%-3s %-15s %-12s %8s s %8s KiB  %s\n' "$r" "$t" "$a" "$secs" "$rss" "$status" >&2
    done
  done
done

# Tables: per test and allocator the median over rounds (FAIL if any round failed),
# divided by the row's best median; a last row with each allocator's geometric mean
# (over the tests it passed; marked * where it failed some).
table() {  # <column of raw> <title> <unit label> <divisor for the best column>
  awk -F'\t' -v col="$1" -v title="$2" -v unit="$3" -v div="$4" -v names="${names[*]}" '
    NR == 1 { next }
    !($1 in seen) { seen[$1] = 1; order[++nt] = $1 }
    { k = $1 SUBSEP $2; if ($6 != "ok") bad[k] = 1; else v[k, ++cnt[k]] = $col }
    function median(k,   n, i, j, x, a) {
      n = cnt[k]; for (i = 1; i <= n; i++) a[i] = v[k, i] + 0
      for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
      na = split(names, al, " ")
      printf "### %s (median / best median of the row)\n\n| test |", title
      for (j = 1; j <= na; j++) printf " %s |", al[j]
      printf " best (%s) |\n|---|", unit
      for (j = 1; j <= na; j++) printf "---:|"
      print "---:|"
      for (t = 1; t <= nt; t++) {
        best = ""
        for (j = 1; j <= na; j++) {
          k = order[t] SUBSEP al[j]
          if (!(k in bad) && cnt[k] > 0) { m[j] = median(k); if (best == "" || m[j] < best) best = m[j] }
        }
        printf "| %s |", order[t]
        for (j = 1; j <= na; j++) {
          k = order[t] SUBSEP al[j]
          if ((k in bad) || cnt[k] == 0 || best == "") { printf " FAIL |"; failed[j] = 1; continue }
          r = best > 0 ? m[j] / best : 1
          printf " %.2f |", r; lsum[j] += log(r); ln[j]++
        }
        if (best == "") print " - |"; else printf " %.2f |\n", best / div
      }
      printf "| geomean |"
      for (j = 1; j <= na; j++)
        if (ln[j]) printf " %.2f%s |", exp(lsum[j] / ln[j]), (failed[j] ? "*" : ""); else printf " - |"
      print " |"; for (j = 1; j <= na; j++) if (failed[j]) { print "\n\\* over the tests that allocator passed"; break }
      print ""
    }' "$raw"
}
echo
echo "$rounds round(s), procs=$procs, $(date -u '+%Y-%m-%d %H:%M UTC'), raw results: $raw"
for ((i = 1; i < n; i++)); do echo "- ${names[i]}: ${libs[i]}"; done
echo
table 4 "Time" "s" 1
table 5 "Max RSS" "MiB" 1024
