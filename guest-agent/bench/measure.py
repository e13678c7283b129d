#!/usr/bin/env python3
"""Measures the guest agent's start-to-listening time and RSS, per JVM flag set.

usage: measure.py JAR [RUNS]

For each flag set, RUNS times: spawn `java FLAGS -jar JAR --listen unix:...`, time until the
socket exists (the agent binds under a temporary name and renames it into place once listening),
read VmRSS, then connect, handshake, ping, exec+wait `true` and read VmRSS again, then Shutdown.
Prints the medians. Frames and protobuf are encoded by hand so this needs nothing but Python.
"""
import os, shutil, socket, statistics, struct, subprocess, sys, tempfile, time

LEAN = ["-XX:+UseSerialGC", "-Xms8m", "-Xmx32m", "-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1", "-Xss512k",
        "-XX:-UsePerfData", "-Xshare:auto"]


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def frame(stream, ftype, payload, flags=0):
    return struct.pack(">IIBB", len(payload), stream, ftype, flags) + payload


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("agent closed")
        buf += chunk
    return buf


def call(s, stream, request):
    s.sendall(frame(stream, 1, request))
    while True:
        length, sid, ftype, flags = struct.unpack(">IIBB", read_exact(s, 10))
        payload = read_exact(s, length)
        if ftype == 2 and sid == stream:
            return payload


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one_run(jar, flags, workdir):
    sock = os.path.join(workdir, "agent.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    t0 = time.perf_counter()
    p = subprocess.Popen(["java", *flags, "-jar", jar, "--listen", "unix:" + sock, "--sandbox-id", "bench",
                          "--incarnation", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(sock):
            if p.poll() is not None:
                raise RuntimeError("agent exited with %s" % p.returncode)
            time.sleep(0.0005)
        ready_ms = (time.perf_counter() - t0) * 1000
        rss_idle = rss_kb(p.pid)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        t1 = time.perf_counter()
        call(s, 1, field_bytes(1, field_bytes(1, b"bench") + field_varint(2, 1) + field_varint(3, 1)))
        first_call_ms = (time.perf_counter() - t1) * 1000
        call(s, 3, field_bytes(10, field_varint(1, 7)))
        call(s, 5, field_bytes(2, field_bytes(1, b"t") + field_bytes(2, b"true")))
        call(s, 7, field_bytes(3, field_bytes(1, b"t")))
        rss_busy = rss_kb(p.pid)
        call(s, 9, field_bytes(11, field_varint(1, 1000)))
        s.close()
        p.wait(timeout=30)
        return ready_ms, first_call_ms, rss_idle, rss_busy
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    jar = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 11
    workdir = tempfile.mkdtemp(prefix="agent-bench")
    jsa = os.path.join(workdir, "agent.jsa")
    try:
        # AppCDS: one training run dumps the classes it loaded when it exits (Shutdown -> System.exit).
        one_run(jar, LEAN + ["-XX:ArchiveClassesAtExit=" + jsa], workdir)
        sets = [("default JVM flags", []),
                ("lean flags", LEAN),
                ("lean flags + AppCDS", LEAN + ["-XX:SharedArchiveFile=" + jsa])]
        print(f"{runs} runs each, medians; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
        print(f"{'flags':<22} {'ready ms':>9} {'1st call ms':>12} {'RSS idle MiB':>13} {'RSS after exec MiB':>19}")
        for name, flags in sets:
            results = [one_run(jar, flags, workdir) for _ in range(runs)]
            med = [statistics.median(r[i] for r in results) for i in range(4)]
            print(f"{name:<22} {med[0]:9.0f} {med[1]:12.1f} {med[2] / 1024:13.1f} {med[3] / 1024:19.1f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
