#!/usr/bin/env python3
"""Time to first token of a streamed chat completion, as a client sees it: from sending the
request to the first SSE event that carries answer text (a non-empty `delta.content`), and to
the end of the stream. Sequential requests (no load), medians in milliseconds.

    python3 bench/ttft.py URL [API_KEY] [REQUESTS]     # URL: .../v1/chat/completions

Prints: `ttft_ms total_ms` (medians).
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse


def one(url, key, body):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    start = time.perf_counter()
    conn.request("POST", u.path, body=body, headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"{url}: HTTP {resp.status}: {resp.read()[:200]!r}")
    first = None
    for line in resp:
        line = line.strip()
        if not line.startswith(b"data:") or line == b"data: [DONE]":
            continue
        event = json.loads(line[5:])
        if first is None and any((c.get("delta") or {}).get("content") for c in event.get("choices", [])):
            first = time.perf_counter()
    end = time.perf_counter()
    conn.close()
    if first is None:
        raise SystemExit(f"{url}: the stream carried no text")
    return (first - start) * 1000, (end - start) * 1000


def main():
    url = sys.argv[1]
    key = sys.argv[2] if len(sys.argv) > 2 else ""
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    body = json.dumps({"model": "fake-model", "stream": True, "max_tokens": 64,
                       "messages": [{"role": "user", "content": "Summarise the plot of Hamlet in two sentences."}]})
    one(url, key, body)  # warm the connection path
    runs = [one(url, key, body) for _ in range(n)]
    print(f"{statistics.median(r[0] for r in runs):.2f} {statistics.median(r[1] for r in runs):.2f}")


if __name__ == "__main__":
    main()
