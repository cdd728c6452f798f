"""What the analysis scripts share: running the release `coconut` binary for JSON, and hop distances.

The binary is `$CARGO_TARGET_DIR/release/coconut` (default `target/release/coconut`).
"""
import json
import os
import subprocess
from collections import deque

BINARY = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "coconut")


def run_json(*args):
    """`coconut ARGS...`, its stdout parsed as JSON (a failing command raises)."""
    return json.loads(subprocess.run([BINARY, *map(str, args)], check=True, capture_output=True, text=True).stdout)


def analyze(ckpt, question, k):
    """`coconut analyze`: the question's concept graph and the node values after each of k thoughts."""
    return run_json("analyze", "--checkpoint", ckpt, "--question", question, "--k", k)


def bfs(starts, neighbours):
    """Shortest hop count from any of `starts` to every node reachable through `neighbours[node]`."""
    dist, queue = {v: 0 for v in starts}, deque(starts)
    while queue:
        u = queue.popleft()
        for v in neighbours[u]:
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def hops_from(analysis):
    """Shortest hop count from the person to every concept reachable from it (the person: 0)."""
    children = [[] for _ in analysis["names"]]
    for a, b in analysis["edges"]:
        children[a].append(b)
    return bfs([analysis["root"]], children)
