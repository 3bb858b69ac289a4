"""Round trips per second on the node daemon's socket, and the time from `submit` to `running`.

    python3 benches/node_socket.py SOCKET CONFIG PROJECT [N]

SOCKET: a running daemon's socket (the caller must have a role); CONFIG: a training config to submit
(absolute path); N: round trips to time (default 2000). Prints one JSON object.
"""
import json, socket, sys, time

def call(f, s, req):
    req["version"] = 1
    s.sendall((json.dumps(req) + "\n").encode())
    return json.loads(f.readline())

def main():
    path, config, project = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("r")
    t = time.perf_counter()
    for _ in range(n):
        assert call(f, s, {"op": "whoami"})["ok"]
    rt = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(200):
        assert call(f, s, {"op": "list", "all": True})["ok"]
    lt = time.perf_counter() - t
    t0 = time.perf_counter()
    job = call(f, s, {"op": "submit", "project": project, "config": config, "devices": "cpu:1"})["job"]
    submitted = time.perf_counter() - t0
    while True:
        jobs = call(f, s, {"op": "list", "all": True})["jobs"]
        st = next(j for j in jobs if j["id"] == job)["state"]
        if st != "queued":
            break
        time.sleep(0.005)
    started = time.perf_counter() - t0
    call(f, s, {"op": "cancel", "job": job})
    print(json.dumps({"whoami_per_s": n / rt, "list_per_s": 200 / lt, "submit_ms": submitted * 1e3,
                      "submit_to_running_ms": started * 1e3, "state": st}))

main()
