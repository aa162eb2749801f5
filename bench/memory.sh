#!/usr/bin/env bash
# Where the gateway's resident memory is: a chain of bench/lib.sh (realistic by default),
# read from /proc/PID/smaps at idle and again after a load at concurrency CONC, split into the
# binary's code, its other pages, shared libraries, thread stacks, glibc's thread arenas
# (SQLite) and the rest of the anonymous memory (jemalloc: the Rust heap).
# Not a speed: read it beside the RSS figures of `bench/load.sh`.
#
#   bash bench/memory.sh                       # c = 64, plain, long prompt, 8 s
#   CONC=16 MODE=stream bash bench/memory.sh
#   GATEHOUSE_BIN=/path/to/gatehouse bash bench/memory.sh
#   GATEWAY=default bash bench/memory.sh       # or redis; the realistic chain by default
#   JEMALLOC=narenas:2,dirty_decay_ms:1000 bash bench/memory.sh   # jemalloc settings to try
set -euo pipefail
cd "$(dirname "$0")/.."
CONC=${CONC:-64}
MODE=${MODE:-plain}
PROMPT=${PROMPT:-long}
DURATION=${DURATION:-8}
GATEWAY=${GATEWAY:-realistic}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

. bench/lib.sh
build_bins
bin=${GATEHOUSE_BIN:-$target/$profile/gatehouse}
start_fake
# jemalloc settings to try (the release binary's allocator; `_RJEM_` is tikv-jemallocator's
# prefix; its statistics are not compiled in, so /proc is the view here)
[ -n "${JEMALLOC:-}" ] && export _RJEM_MALLOC_CONF=$JEMALLOC
start_chain gw "$GATEWAY"
unset _RJEM_MALLOC_CONF
url=$gw_url; key=$gw_key; pid=$gw_pid
lua "$(body "$PROMPT" "$MODE")" "$key" > "$out/req.lua"

# The resident KiB of each kind of mapping. A thread's stack is an anonymous mapping right
# after a one-page guard (---p); the rest of the anonymous memory is the allocators' (jemalloc
# for Rust, glibc malloc for C code such as SQLite) and the runtime's.
breakdown() {
  python3 - "$pid" "$bin" "$1" <<'PY'
import os, sys
pid, binary, label = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
maps, cur = [], None
for line in open(f"/proc/{pid}/smaps"):
    f = line.split()
    if "-" in f[0] and len(f) >= 5 and ":" not in f[0]:
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        cur = {"lo": lo, "hi": hi, "perm": f[1], "path": f[5] if len(f) > 5 else "", "rss": 0, "lazy": 0}
        maps.append(cur)
    elif f[0] == "Rss:":
        cur["rss"] = int(f[1])
    elif f[0] == "LazyFree:":
        cur["lazy"] = int(f[1])
kinds = {}
def add(kind, kib):
    kinds[kind] = kinds.get(kind, 0) + kib
for i, m in enumerate(maps):
    guarded = i > 0 and maps[i - 1]["perm"] == "---p" and maps[i - 1]["hi"] == m["lo"] and maps[i - 1]["hi"] - maps[i - 1]["lo"] <= 65536
    if m["path"] == binary:
        add("binary: code" if "x" in m["perm"] else "binary: data and read-only data", m["rss"])
    elif m["path"].startswith("/"):
        add("shared libraries and other files", m["rss"])
    elif m["path"] == "[heap]":
        add("brk heap (glibc malloc's main arena)", m["rss"])
    elif m["path"] == "[stack]":
        add("main thread's stack", m["rss"])
    elif m["path"]:
        add("kernel pages " + m["path"], m["rss"])
    elif guarded and m["hi"] - m["lo"] <= 16 << 20:
        add("thread stacks", m["rss"])
    elif m["lo"] % (64 << 20) == 0 and m["perm"] == "rw-p" and (
        m["hi"] - m["lo"] == 64 << 20
        or (i + 1 < len(maps) and maps[i + 1]["lo"] == m["hi"] and maps[i + 1]["perm"] == "---p"
            and maps[i + 1]["hi"] - m["lo"] == 64 << 20)):
        # glibc's per-thread arenas are 64 MiB reservations, aligned to their size
        add("glibc malloc's thread arenas (C code: SQLite)", m["rss"])
    else:
        add("anonymous: jemalloc (the Rust heap) and the rest", m["rss"])
total = sum(kinds.values())
print(f"\n{label}: {total / 1024:.1f} MiB resident")
for kind, kib in sorted(kinds.items(), key=lambda kv: -kv[1]):
    if kib >= 64:
        print(f"  {kib / 1024:7.1f} MiB  {kind}")
# freed with MADV_FREE: counted in RSS until the kernel needs the memory
lazy = sum(m["lazy"] for m in maps)
print(f"  of which lazily freed (MADV_FREE, reclaimed only under memory pressure): {lazy / 1024:.1f} MiB")
PY
}

sleep 1
breakdown "idle, 1 s after start"
read -r rps p50 _ errs < <(measure "$url/v1/chat/completions" "$out/req.lua" "$CONC")
echo
echo "load: c = $CONC, $MODE, $PROMPT prompt, $DURATION s: $rps rps, p50 $p50 us, $errs non-2xx"
breakdown "right after the load"
echo "  peak (VmHWM): $(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' /proc/$pid/status) MiB"
sleep 12
breakdown "12 s later (past jemalloc's 10 s decay)"
