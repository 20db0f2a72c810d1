"""A `skyreels serve --demo` on 127.0.0.1 for the server and browser tests, and a small HTTP client.

Only the standard library: the tests need nothing beyond Debian's python3. The server binary comes from
$SKYREELS_BIN (ctest sets it); each server gets a fresh data directory and a free port (--port 0, read back
from the line it prints).
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import uuid

BIN = os.environ.get("SKYREELS_BIN", "build/skyreels")
# Tiny jobs: the demo model at 64x64, 5 frames, 2 steps takes well under a second on 2 cores.
FAST = {"size": "64x64", "num_frames": 5, "num_inference_steps": 2}
# A job that runs for a few seconds, to be caught in the middle (cancel, kill -9, a full queue).
SLOW = {"size": "128x128", "num_frames": 17, "num_inference_steps": 40}


class Server:
    def __init__(self, *args, data_dir=None, env=None):
        self.args = list(args)
        self.owns_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="skyreels-serve-")
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.port = None
        self.host = "127.0.0.1"
        # The server's log (stderr) goes to a file: a pipe nobody reads would block a talkative server.
        fd, self.log_path = tempfile.mkstemp(prefix="skyreels-serve-", suffix=".log")
        os.close(fd)

    def start(self):
        cmd = [BIN, "serve", "--demo", "--port", "0", "--data-dir", self.data_dir] + self.args
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=self.env, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on http://[^:]+:(\d+)/", line)
        if not m:
            self.kill(signal.SIGTERM)
            raise RuntimeError("the server did not start: %r %s" % (line, self.log()))
        self.port = int(m.group(1))
        return self

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def log(self):
        """What the server has written to stderr so far."""
        with open(self.log_path) as f:
            return f.read()

    def stop(self, remove_dir=True):
        self.kill(signal.SIGTERM)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if os.path.exists(self.log_path):
            os.remove(self.log_path)
        if remove_dir and self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def rss(self):
        """The server process's resident memory in bytes (VmRSS)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    # HTTP: (status, headers as a dict with lower-case names, body bytes)
    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            h = dict(headers or {})
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                h.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None, expect=200):
        status, h, data = self.request(method, path, body, headers)
        if expect is not None and status != expect:
            raise AssertionError("%s %s: status %d, expected %d: %s" % (method, path, status, expect, data[:500]))
        return json.loads(data) if data else None

    def submit(self, **fields):
        return self.json("POST", "/v1/videos", dict({"prompt": "FPS-24, a cat"}, **fields))

    def wait(self, vid, statuses=("completed", "failed"), timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            j = self.json("GET", "/v1/videos/" + vid)
            if j["status"] in statuses:
                return j
            time.sleep(0.1)
        raise AssertionError("%s did not reach %s in %d s" % (vid, statuses, timeout))

    def wait_progress(self, vid, at_least, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            j = self.json("GET", "/v1/videos/" + vid)
            if j["status"] == "in_progress" and j["progress"] >= at_least:
                return j
            if j["status"] in ("completed", "failed"):
                raise AssertionError("%s finished before reaching %d%%" % (vid, at_least))
            time.sleep(0.05)
        raise AssertionError("%s did not reach %d%% in %d s" % (vid, at_least, timeout))


def multipart(fields, files=None):
    """(body, content type) of a multipart/form-data request; files: name -> (filename, type, bytes)."""
    boundary = "skyreels" + uuid.uuid4().hex
    out = b""
    for k, v in fields.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary, k, v)).encode()
    for k, (name, ctype, data) in (files or {}).items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\nContent-Type: %s\r\n\r\n"
                % (boundary, k, name, ctype)).encode() + data + b"\r\n"
    out += ("--%s--\r\n" % boundary).encode()
    return out, "multipart/form-data; boundary=" + boundary


def png_bytes(width, height):
    """A valid RGB PNG (a gradient), made with zlib only."""
    import struct
    import zlib
    raw = b"".join(b"\x00" + bytes(v for x in range(width)
                                    for v in (x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), 128))
                   for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_header_only(width, height):
    """The first bytes of a PNG that claims a size, without pixel data (the size check must refuse it first)."""
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr +
            struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xffffffff))


def safetensors(tensors):
    """A safetensors file's bytes: {name: (shape, [f32 values])}."""
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


# The demo transformer's width (2 heads of 16): an adapter on its first dual block's query projection.
DEMO_D = 32


def adapter(rank=2, d=DEMO_D, seed=1):
    rng = random.Random(seed)
    return safetensors({
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": ([rank, d], [rng.gauss(0, 1) for _ in range(rank * d)]),
        "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": ([d, rank], [rng.gauss(0, 1) for _ in range(rank * d)]),
    })
