"""The HTTP API of `skyreels serve` against a real server on 127.0.0.1 (the demo model): every endpoint,
the errors a client can cause (each a 4xx naming the field), the security rules, the queue's limits and
cancellation, and a job's own LoRA adapters (files in --lora-dir). Run by ctest (label server): python3 test_server_api.py [TestClass]."""
import json
import os
import shutil
import socket
import struct
import tempfile
import time
import unittest

from harness import DEMO_D, FAST, SLOW, Server, adapter, multipart, png_bytes, png_header_only


def png_size(png):
    """(width, height) of a whole, valid 8-bit RGB PNG: every chunk's CRC checked, the pixel data inflated to
    exactly height rows of 1 + 3 * width bytes, IEND last."""
    import struct
    import zlib
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
    pos, idat, size = 8, b"", None
    while True:
        n, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", png[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + data) & 0xffffffff, kind
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", data[:10])
            assert (depth, colour) == (8, 2), (depth, colour)
            size = (w, h)
        elif kind == b"IDAT":
            idat += data
        pos += 12 + n
        if kind == b"IEND":
            break
    assert pos == len(png), "bytes after IEND"
    assert len(zlib.decompress(idat)) == size[1] * (1 + 3 * size[0])
    return size


class Endpoints(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server().start()

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()

    def test_health_and_models(self):
        h = self.s.json("GET", "/v1/health")
        self.assertEqual(h["status"], "ok")
        self.assertIn("queued", h["queue"])
        m = self.s.json("GET", "/v1/models")
        self.assertEqual(m["object"], "list")
        self.assertEqual({x["id"] for x in m["data"]}, {"skyreels-demo-t2v", "skyreels-demo-i2v"})

    def test_create_get_list_content_delete(self):
        v = self.s.submit(seconds="0.5", size="64x64", num_inference_steps=2, seed=7, negative_prompt="blur",
                          cache="teacache:0.15")
        self.assertTrue(v["id"].startswith("video_"))
        self.assertEqual(v["object"], "video")
        self.assertIn(v["status"], ("queued", "in_progress"))
        self.assertEqual(v["size"], "64x64")
        self.assertEqual(v["num_frames"], 13)  # 0.5 s at 24 fps: the nearest 4k+1
        self.assertIsInstance(v["seconds"], str)
        self.assertEqual(v["seed"], 7)
        self.assertEqual(v["cache"], "teacache:0.15")  # step caching, as --cache spells it
        done = self.s.wait(v["id"])
        self.assertEqual(done["status"], "completed", done)
        self.assertEqual(done["progress"], 100)
        self.assertIsNotNone(done["completed_at"])
        self.assertGreater(done["expires_at"], done["completed_at"])
        status, h, mp4 = self.s.request("GET", "/v1/videos/%s/content" % v["id"])
        self.assertEqual(status, 200)
        self.assertEqual(h["content-type"], "video/mp4")
        self.assertEqual(mp4[4:8], b"ftyp")
        status, h, part = self.s.request("GET", "/v1/videos/%s/content" % v["id"], headers={"Range": "bytes=0-99"})
        self.assertEqual(status, 206)
        self.assertEqual(part, mp4[:100])
        self.assertTrue(h["content-range"].startswith("bytes 0-99/"))
        status, h, png = self.s.request("GET", "/v1/videos/%s/content?variant=thumbnail" % v["id"])
        self.assertEqual((status, h["content-type"], png[:4]), (200, "image/png", b"\x89PNG"))
        e = self.s.json("GET", "/v1/videos/%s/content?variant=spritesheet" % v["id"], expect=400)
        self.assertEqual(e["error"]["param"], "variant")
        listed = self.s.json("GET", "/v1/videos")
        self.assertEqual(listed["object"], "list")
        self.assertIn(v["id"], [x["id"] for x in listed["data"]])
        d = self.s.json("DELETE", "/v1/videos/" + v["id"])
        self.assertEqual(d, {"id": v["id"], "object": "video.deleted", "deleted": True})
        self.s.json("GET", "/v1/videos/" + v["id"], expect=404)
        self.s.json("GET", "/v1/videos/%s/content" % v["id"], expect=404)

    def test_list_pagination_and_order(self):
        ids = [self.s.submit(**FAST)["id"] for _ in range(3)]
        for i in ids:
            self.s.wait(i)
        page = self.s.json("GET", "/v1/videos?limit=2&order=asc&after=" + ids[0])
        self.assertEqual([x["id"] for x in page["data"]], ids[1:3])
        self.assertEqual(page["last_id"], ids[2])
        newest = self.s.json("GET", "/v1/videos?limit=1")
        self.assertEqual(newest["data"][0]["id"], ids[2])
        self.assertTrue(newest["has_more"])
        for bad in ("limit=0", "limit=101", "limit=x", "order=up", "after=video_" + "0" * 32, "after=../x"):
            e = self.s.json("GET", "/v1/videos?" + bad, expect=400)
            self.assertEqual(e["error"]["param"], bad.split("=")[0], bad)

    def test_multipart_and_image_to_video(self):
        body, ctype = multipart({"prompt": "FPS-24, a dog", "size": "64x64", "num_frames": "5",
                                 "num_inference_steps": "2", "model": "skyreels-demo-i2v"},
                                {"input_reference": ("first.png", "image/png", png_bytes(80, 48))})
        v = self.s.json("POST", "/v1/videos", body, {"Content-Type": ctype})
        self.assertEqual((v["task"], v["has_input_reference"]), ("i2v", True))
        self.assertEqual(self.s.wait(v["id"])["status"], "completed")
        # Without `model`, an image chooses the image-to-video model.
        body, ctype = multipart({"prompt": "FPS-24, a dog", **{k: str(x) for k, x in FAST.items()}},
                                {"input_reference": ("first.png", "image/png", png_bytes(32, 32))})
        v = self.s.json("POST", "/v1/videos", body, {"Content-Type": ctype})
        self.assertEqual(v["model"], "skyreels-demo-i2v")
        self.assertEqual(self.s.wait(v["id"])["status"], "completed")

    def test_events_stream_progress_then_done(self):
        v = self.s.submit(**SLOW)
        conn = socket.create_connection(("127.0.0.1", self.s.port), timeout=120)
        conn.sendall(("GET /v1/videos/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % v["id"]).encode())
        data = b""
        while b"event: done" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        conn.close()
        text = data.decode()
        self.assertIn("text/event-stream", text)
        events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {\"device")]
        self.assertGreater(len(events), 5, text[:2000])
        stages = {e["stage"] for e in events}
        self.assertIn("denoising", stages)
        self.assertTrue(any(e["eta_seconds"] is not None for e in events))
        self.assertTrue(all("host_rss_bytes" in e for e in events))
        self.assertTrue(any(e["preview_step"] for e in events), "no preview announced while denoising")
        progress = [e["progress"] for e in events]
        self.assertEqual(progress, sorted(progress))
        self.assertIn("event: done", text)

    def test_preview_of_a_running_and_a_finished_job(self):
        running = self.s.submit(**SLOW)
        queued = self.s.submit(**SLOW)
        # Before its first step a job has no preview: 404 saying so, not an empty image.
        e = self.s.json("GET", "/v1/videos/%s/preview" % queued["id"], expect=404)
        self.assertIn("no preview yet", e["error"]["message"])
        self.s.json("GET", "/v1/videos/video_%s/preview" % ("0" * 32), expect=404)

        def sheet_size():
            # SLOW is 128x128, 17 frames: 5 latent frames of 16x16, each pixel drawn 8x (the smallest factor that
            # reaches 240 px on the longer side, at most 8): 128x128 frames on a ceil(sqrt(5)) = 3-column grid.
            side, frames, s = 16, (SLOW["num_frames"] - 1) // 4 + 1, 1
            while side * s < 240 and s < 8:
                s += 1
            cols = 1
            while cols * cols < frames:
                cols += 1
            return cols * side * s, ((frames + cols - 1) // cols) * side * s

        def fetch(vid):
            status, h, png = self.s.request("GET", "/v1/videos/%s/preview" % vid)
            self.assertEqual(status, 200, png[:300])
            self.assertEqual(h["content-type"], "image/png")
            self.assertEqual(png_size(png), sheet_size())

        j = self.s.wait_progress(running["id"], 30)  # a third of the way through denoising
        self.assertGreaterEqual(j["preview_step"], 1)
        fetch(running["id"])
        self.s.json("POST", "/v1/videos/%s/cancel" % queued["id"])
        done = self.s.wait(running["id"])
        self.assertEqual(done["status"], "completed")
        fetch(running["id"])  # the last step's stays with the finished job
        self.s.json("GET", "/v1/videos/%s/preview" % queued["id"], expect=404)
        self.s.json("DELETE", "/v1/videos/" + running["id"])
        self.s.json("GET", "/v1/videos/%s/preview" % running["id"], expect=404)

    def test_cancel_running_and_queued(self):
        running = self.s.submit(**SLOW)
        queued = self.s.submit(**SLOW)
        self.s.wait_progress(running["id"], 15)
        c = self.s.json("POST", "/v1/videos/%s/cancel" % queued["id"])
        self.assertEqual((c["status"], c["error"]["code"]), ("failed", "cancelled"))
        self.s.json("POST", "/v1/videos/%s/cancel" % running["id"])
        j = self.s.wait(running["id"])
        self.assertEqual((j["status"], j["error"]["code"]), ("failed", "cancelled"))
        self.assertLess(j["progress"], 90)
        # A cancelled job leaves no file, not even a partial one.
        import os
        left = [f for f in os.listdir(os.path.join(self.s.data_dir, "videos")) if f.startswith(running["id"])]
        self.assertEqual(left, [])
        self.s.json("GET", "/v1/videos/%s/content" % running["id"], expect=409)
        e = self.s.json("POST", "/v1/videos/%s/cancel" % running["id"], expect=409)
        self.assertEqual(e["error"]["code"], "job_finished")

    def test_delete_while_running(self):
        v = self.s.submit(**SLOW)
        self.s.wait_progress(v["id"], 12)
        self.s.json("DELETE", "/v1/videos/" + v["id"])
        self.s.json("GET", "/v1/videos/" + v["id"], expect=404)
        w = self.s.submit(**FAST)  # the worker moves on
        self.assertEqual(self.s.wait(w["id"])["status"], "completed")

    def test_the_page_is_served_from_the_binary(self):
        status, h, page = self.s.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(h["content-type"].startswith("text/html"))
        self.assertIn(b"<progress", page)
        self.assertNotIn(b"http://", page.replace(b"http://www.w3.org", b""))
        self.assertNotIn(b"https://", page)  # no CDN: nothing from the network
        self.assertIn("default-src 'none'", h["content-security-policy"])


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server().start()

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()

    def refused(self, body, param, status=400, headers=None):
        s, h, data = self.s.request("POST", "/v1/videos", body, headers)
        self.assertEqual(s, status, data)
        e = json.loads(data)["error"]
        self.assertEqual(e["param"], param, e)
        self.assertTrue(e["message"])
        self.assertIn("type", e)
        self.assertIn("code", e)
        return e

    def test_fields_are_named(self):
        cases = [
            ({"prompt": "x", "size": "100x64"}, "size"),
            ({"prompt": "x", "size": "64"}, "size"),
            ({"prompt": "x", "size": "64x99999"}, "size"),
            ({"prompt": "x", "num_frames": 6}, "num_frames"),
            ({"prompt": "x", "num_frames": 100000}, "num_frames"),
            ({"prompt": "x", "num_inference_steps": 0}, "num_inference_steps"),
            ({"prompt": "x", "num_inference_steps": "many"}, "num_inference_steps"),
            ({"prompt": "x", "num_inference_steps": 1.5}, "num_inference_steps"),
            ({"prompt": "x", "seconds": "-1"}, "seconds"),
            ({"prompt": "x", "seconds": "forever"}, "seconds"),
            ({"prompt": "x", "guidance_scale": "nan"}, "guidance_scale"),
            ({"prompt": "x", "embedded_guidance_scale": 1e9}, "embedded_guidance_scale"),
            ({"prompt": "x", "seed": -2}, "seed"),
            ({"prompt": "x", "seed": 18446744073709551615}, "seed"),
            ({"prompt": "x", "fps": 0}, "fps"),
            ({"prompt": ""}, "prompt"),
            ({"prompt": 5}, "prompt"),
            ({"size": "64x64"}, "prompt"),
            ({"prompt": "x", "model": "sora-2"}, "model"),
            ({"prompt": "x", "steps": 3}, "steps"),
            ({"prompt": "x", "input_reference": "data:image/png;base64,AAAA"}, "input_reference"),
            ({"prompt": "x", "negative_prompt": ["a"]}, "negative_prompt"),
            ({"prompt": "x", "cache": "teacache"}, "cache"),
            ({"prompt": "x", "cache": "fbcache:-1"}, "cache"),
            ({"prompt": "x", "cache": "magcache:0.1"}, "cache"),
            ({"prompt": "x", "cache": 0.1}, "cache"),
        ]
        for body, param in cases:
            with self.subTest(body=body):
                self.refused(body, param)

    def test_bad_json_and_types(self):
        e = self.refused(b"{\"prompt\": ", None, headers={"Content-Type": "application/json"})
        self.assertEqual(e["code"], "invalid_json")
        self.refused(b"[1, 2]", None, headers={"Content-Type": "application/json"})
        self.refused(b"\"prompt\"", None, headers={"Content-Type": "application/json"})
        # Invalid UTF-8 inside a JSON string.
        self.refused(b"{\"prompt\": \"a\xff\"}", None, headers={"Content-Type": "application/json"})
        s, _, data = self.s.request("POST", "/v1/videos", b"prompt=x", {"Content-Type": "text/plain"})
        self.assertEqual(s, 415, data)

    def test_images_are_checked_before_decoding(self):
        def send(name, ctype, data, fields=None):
            body, ct = multipart(dict({"prompt": "x", "model": "skyreels-demo-i2v"}, **(fields or {})),
                                 {"input_reference": (name, ctype, data)})
            return self.refused(body, "input_reference", headers={"Content-Type": ct})
        self.assertIn("GIF", send("a.gif", "image/gif", b"GIF89a" + b"\0" * 64)["message"])
        send("a.txt", "text/plain", b"hello, this is not an image at all")
        e = send("big.png", "image/png", png_header_only(5000, 64))
        self.assertIn("5000x64", e["message"])
        send("zero.png", "image/png", png_header_only(0, 10))
        send("short.png", "image/png", png_bytes(8, 8)[:20])
        send("trunc.jpg", "image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF")
        # A JPEG header claiming 8000 px is refused from its frame header alone.
        sof = b"\xff\xd8\xff\xc0\x00\x11\x08\x1f\x40\x1f\x40\x03" + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
        self.assertIn("8000x8000", send("huge.jpg", "image/jpeg", sof)["message"])
        # An image for the text-to-video model.
        body, ct = multipart({"prompt": "x", "model": "skyreels-demo-t2v"},
                             {"input_reference": ("a.png", "image/png", png_bytes(16, 16))})
        self.refused(body, "input_reference", headers={"Content-Type": ct})
        # A PNG whose header is fine but whose pixels are broken fails the job, with the reason, not the server.
        good = png_bytes(32, 32)
        broken = good[:60] + b"\0" * (len(good) - 60)
        body, ct = multipart({"prompt": "x", "model": "skyreels-demo-i2v", **{k: str(x) for k, x in FAST.items()}},
                             {"input_reference": ("b.png", "image/png", broken)})
        v = self.s.json("POST", "/v1/videos", body, {"Content-Type": ct})
        j = self.s.wait(v["id"])
        self.assertEqual((j["status"], j["error"]["code"]), ("failed", "invalid_request"), j)
        self.assertEqual(self.s.json("GET", "/v1/health")["status"], "ok")

    def test_unknown_ids_and_traversal_are_404(self):
        for path in ("/v1/videos/video_" + "0" * 32, "/v1/videos/nope", "/v1/videos/..%2F..%2Fetc%2Fpasswd",
                     "/v1/videos/%2e%2e", "/v1/videos/../jobs", "/v1/videos/video_..%2f..%2fserver.lock/content",
                     "/v1/videos/video_0123456789abcdef0123456789ABCDEF", "/v1/videos/..%2f/content",
                     "/v1/videos/%00/events", "/v1/nothing"):
            with self.subTest(path=path):
                for method in ("GET", "DELETE"):
                    s, h, data = self.s.request(method, path)
                    self.assertEqual(s, 404, (method, path, data))
                    self.assertIn("error", json.loads(data))
        self.assertEqual(self.s.request("POST", "/v1/videos/video_%s/cancel" % ("1" * 32))[0], 404)
        self.assertEqual(self.s.request("GET", "/v1/videos/video_%s/events" % ("1" * 32))[0], 404)

    def test_oversized_and_encoded_bodies(self):
        big = b"{\"prompt\": \"" + b"a" * (21 << 20) + b"\"}"
        s, h, data = self.s.request("POST", "/v1/videos", big, {"Content-Type": "application/json"})
        self.assertEqual(s, 413, data[:200])
        self.assertEqual(json.loads(data)["error"]["code"], "request_too_large")
        # Refused on the header alone: a claimed length is never read.
        sock = socket.create_connection(("127.0.0.1", self.s.port), timeout=10)
        sock.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 999999999999\r\n\r\n")
        reply = sock.recv(4096)
        sock.close()
        self.assertIn(b" 413 ", reply.split(b"\r\n")[0])
        import gzip
        s, _, data = self.s.request("POST", "/v1/videos", gzip.compress(b"{\"prompt\": \"x\"}"),
                                    {"Content-Type": "application/json", "Content-Encoding": "gzip"})
        self.assertEqual(s, 415, data)
        self.assertEqual(json.loads(data)["error"]["code"], "content_encoding_not_supported")


class Security(unittest.TestCase):
    def test_a_token_is_required_off_loopback(self):
        # Without a token, a non-loopback bind is refused before anything loads.
        s = Server("--host", "0.0.0.0")
        with self.assertRaises(RuntimeError):
            s.start()
        s.stop()
        with Server("--host", "0.0.0.0", "--token", "s3cret-token") as s:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cret-toke"},
                            {"Authorization": "Bearer s3cret-token2"}, {"Authorization": "Basic s3cret-token"},
                            {"Authorization": "s3cret-token"}):
                st, h, data = s.request("GET", "/v1/videos", headers=headers)
                self.assertEqual(st, 401, headers)
                self.assertEqual(h.get("www-authenticate"), "Bearer")
                self.assertEqual(s.request("POST", "/v1/videos", {"prompt": "x"}, headers)[0], 401)
            ok = {"Authorization": "Bearer s3cret-token"}
            self.assertEqual(s.request("GET", "/v1/videos", headers=ok)[0], 200)
            v = s.json("POST", "/v1/videos", dict(prompt="x", **FAST), headers=ok)
            self.assertEqual(s.request("GET", "/v1/videos/%s" % v["id"])[0], 401)
            self.assertEqual(s.request("GET", "/v1/health")[0], 200)  # open: liveness probes
            self.assertEqual(s.request("GET", "/")[0], 200)  # the page asks for the token itself

    def test_the_token_from_the_environment(self):
        with Server("--host", "0.0.0.0", env={"SKYREELS_SERVER_TOKEN": "from-env"}) as s:
            self.assertEqual(s.request("GET", "/v1/models")[0], 401)
            self.assertEqual(s.request("GET", "/v1/models", headers={"Authorization": "Bearer from-env"})[0], 200)

    def test_host_allowlist_and_cors(self):
        with Server() as s:
            for host in ("evil.example", "evil.example:%d" % s.port, "127.0.0.2.nip.io"):
                st, _, data = s.request("GET", "/v1/models", headers={"Host": host})
                self.assertEqual(st, 403, host)
                self.assertEqual(json.loads(data)["error"]["code"], "host_not_allowed")
            for host in ("localhost:%d" % s.port, "127.0.0.1:%d" % s.port, "[::1]:%d" % s.port):
                self.assertEqual(s.request("GET", "/v1/models", headers={"Host": host})[0], 200, host)
            st, h, _ = s.request("GET", "/v1/models", headers={"Origin": "http://evil.example"})
            self.assertNotIn("access-control-allow-origin", h)
            st, h, _ = s.request("OPTIONS", "/v1/videos", headers={"Origin": "http://evil.example",
                                                                    "Access-Control-Request-Method": "POST"})
            self.assertNotIn("access-control-allow-origin", h)
        with Server("--cors-origin", "http://app.example", "--allowed-host", "videos.internal") as s:
            self.assertEqual(s.request("GET", "/v1/models", headers={"Host": "videos.internal:80"})[0], 200)
            st, h, _ = s.request("GET", "/v1/models", headers={"Origin": "http://app.example"})
            self.assertEqual(h.get("access-control-allow-origin"), "http://app.example")
            st, h, _ = s.request("OPTIONS", "/v1/videos", headers={"Origin": "http://app.example",
                                                                    "Access-Control-Request-Method": "POST"})
            self.assertEqual(st, 204)
            self.assertIn("Authorization", h["access-control-allow-headers"])
            st, h, _ = s.request("GET", "/v1/models", headers={"Origin": "http://other.example"})
            self.assertNotIn("access-control-allow-origin", h)

    def test_no_exception_text_in_headers(self):
        with Server() as s:
            for body in (b"{\"prompt\": \"x\", \"seed\": 1e400}", b"\xff\xfe", b"{" * 100000):
                st, h, data = s.request("POST", "/v1/videos", body, {"Content-Type": "application/json"})
                self.assertEqual(st, 400, data[:200])
                self.assertFalse([k for k in h if "exception" in k], h)


class Queue(unittest.TestCase):
    def test_a_full_queue_answers_429(self):
        with Server("--queue-size", "1") as s:
            running = s.submit(**SLOW)
            s.wait_progress(running["id"], 1)
            waiting = s.submit(**FAST)
            st, h, data = s.request("POST", "/v1/videos", {"prompt": "x"})
            self.assertEqual(st, 429, data)
            self.assertEqual(json.loads(data)["error"]["code"], "queue_full")
            self.assertIn("retry-after", h)
            s.json("POST", "/v1/videos/%s/cancel" % running["id"])
            self.assertEqual(s.wait(waiting["id"])["status"], "completed")
            self.assertEqual(s.submit(**FAST)["status"], "queued")

    def test_finished_jobs_expire_by_count(self):
        with Server("--keep", "2") as s:
            ids = []
            for _ in range(3):
                ids.append(s.submit(**FAST)["id"])
                s.wait(ids[-1])
            kept = [x["id"] for x in s.json("GET", "/v1/videos?order=asc")["data"]]
            self.assertEqual(kept, ids[1:])
            import os
            self.assertFalse(os.path.exists(os.path.join(s.data_dir, "videos", ids[0] + ".mp4")))
            self.assertFalse(os.path.exists(os.path.join(s.data_dir, "jobs", ids[0] + ".json")))

    def test_bad_server_flags(self):
        import subprocess
        from harness import BIN
        for args, words in ((["--keep", "7x"], "--keep"), (["--queue-size", "0"], "--queue-size"),
                            (["--max-body", "lots"], "--max-body"), (["--port", "70000"], "--port"),
                            (["--checkpoint-every", "-1"], "--checkpoint-every")):
            r = subprocess.run([BIN, "serve", "--demo", "--data-dir", "/nonexistent/x"] + args,
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
            self.assertIn(words, r.stderr)


class Loras(unittest.TestCase):
    """Per-job adapters: named inside --lora-dir only, applied to that job alone, named in its video."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="skyreels-loras-")
        with open(os.path.join(cls.dir, "style.safetensors"), "wb") as f:
            f.write(adapter())
        with open(os.path.join(cls.dir, "wide.safetensors"), "wb") as f:
            f.write(adapter(d=DEMO_D * 2))  # shapes of another model: fails when the job runs
        os.symlink("/etc/passwd", os.path.join(cls.dir, "outside.safetensors"))
        # For the listing: a subfolder, a link inside, files that are no adapters, a hidden folder, and a link to a
        # folder outside that holds an adapter (not entered).
        os.makedirs(os.path.join(cls.dir, "styles"))
        with open(os.path.join(cls.dir, "styles", "Ink.SafeTensors"), "wb") as f:
            f.write(adapter(seed=2))
        os.symlink("style.safetensors", os.path.join(cls.dir, "alias.safetensors"))
        for i in range(8):  # dangling links, wherever the walk meets them, are passed over and it goes on
            os.symlink("missing-target.safetensors", os.path.join(cls.dir, "dangling%d.safetensors" % i))
        with open(os.path.join(cls.dir, "README.txt"), "w") as f:
            f.write("not an adapter")
        os.makedirs(os.path.join(cls.dir, ".cache"))
        with open(os.path.join(cls.dir, ".cache", "hidden.safetensors"), "wb") as f:
            f.write(adapter())
        cls.elsewhere = tempfile.mkdtemp(prefix="skyreels-elsewhere-")
        with open(os.path.join(cls.elsewhere, "far.safetensors"), "wb") as f:
            f.write(adapter())
        os.symlink(cls.elsewhere, os.path.join(cls.dir, "linked-folder"))
        cls.s = Server("--lora-dir", cls.dir).start()

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        shutil.rmtree(cls.elsewhere, ignore_errors=True)

    def thumbnail(self, **fields):
        v = self.s.submit(seed=11, **dict(FAST, **fields))
        done = self.s.wait(v["id"])
        self.assertEqual(done["status"], "completed", done)
        status, _, png = self.s.request("GET", "/v1/videos/%s/content?variant=thumbnail" % v["id"])
        self.assertEqual(status, 200)
        status, _, mp4 = self.s.request("GET", "/v1/videos/%s/content" % v["id"])
        self.assertEqual(status, 200)
        return done, png, mp4

    def test_the_adapters_in_the_folder_are_listed(self):
        # Exactly the .safetensors files (any case) a job may name, by the names it uses: not the link to
        # /etc/passwd, the dangling link, the README, the hidden folder, nor the folder reached through a link.
        l = self.s.json("GET", "/v1/loras")
        self.assertEqual(l["object"], "list")
        self.assertFalse(l["has_more"])
        self.assertEqual([x["id"] for x in l["data"]],
                         ["alias.safetensors", "style.safetensors", "styles/Ink.SafeTensors", "wide.safetensors"])
        self.assertEqual({x["object"] for x in l["data"]}, {"lora"})
        self.assertNotIn(self.dir.encode(), json.dumps(l).encode())  # names, never the server's paths
        # Every listed name is one a job may use (wide.safetensors fits no layer: its job fails when it runs, but
        # the request is taken).
        for x in l["data"]:
            with self.subTest(lora=x["id"]):
                v = self.s.submit(loras=[{"file": x["id"], "strength": 0.5}], **FAST)
                self.assertEqual(v["loras"], [{"file": x["id"], "strength": 0.5}])
                self.s.wait(v["id"])

    def test_a_jobs_adapter_is_its_own(self):
        _, before, _ = self.thumbnail()
        done, styled, mp4 = self.thumbnail(loras=[{"file": "style.safetensors", "strength": 2.0}])
        self.assertEqual(done["loras"], [{"file": "style.safetensors", "strength": 2.0}])
        self.assertIn(b"style.safetensors", mp4)  # the video's metadata names the adapter
        self.assertNotIn(self.dir.encode(), mp4)  # by its name, not by the server's folder
        _, after, _ = self.thumbnail()
        self.assertEqual(after, before, "the adapter leaked into the next job")
        self.assertNotEqual(styled, before, "the adapter changed nothing")
        _, again, _ = self.thumbnail(loras=["style.safetensors:2"])  # the string form, the same job
        self.assertEqual(again, styled)

    def test_bad_adapters_are_named(self):
        cases = [
            ([{"file": "missing.safetensors"}], "loras[0]"),
            ([{"file": "../style.safetensors"}], "loras[0]"),
            ([{"file": os.path.join(self.dir, "style.safetensors")}], "loras[0]"),
            ([{"file": "outside.safetensors"}], "loras[0]"),
            (["style.safetensors", {"file": "style.safetensors", "strength": "nan"}], "loras[1].strength"),
            ([{"file": "style.safetensors", "strength": 1e9}], "loras[0].strength"),
            ([{"file": "style.safetensors", "scale": 1}], "loras[0].scale"),
            ([{"strength": 1}], "loras[0].file"),
            ([5], "loras[0]"),
            ("style.safetensors", "loras"),
            ([{"file": "style.safetensors"}] * 17, "loras"),
        ]
        for loras, param in cases:
            with self.subTest(loras=loras):
                s, _, data = self.s.request("POST", "/v1/videos", dict(FAST, prompt="x", loras=loras))
                self.assertEqual(s, 400, data)
                e = json.loads(data)["error"]
                self.assertEqual(e["param"], param, e)
                self.assertIn(param.split(".")[0], e["message"])

    def test_an_adapter_that_does_not_fit_fails_its_job(self):
        v = self.s.submit(seed=3, loras=[{"file": "wide.safetensors"}], **FAST)
        done = self.s.wait(v["id"])
        self.assertEqual(done["status"], "failed", done)
        self.assertIn("wide.safetensors", done["error"]["message"])
        self.assertNotIn(self.dir, done["error"]["message"])  # named as the client named it
        _, png, _ = self.thumbnail()  # the next job runs as before
        self.assertTrue(png.startswith(b"\x89PNG"))

    def test_a_server_without_a_lora_dir_takes_none(self):
        with Server() as plain:
            s, _, data = plain.request("POST", "/v1/videos", dict(FAST, prompt="x", loras=["style.safetensors"]))
            self.assertEqual(s, 400, data)
            self.assertEqual(json.loads(data)["error"]["param"], "loras")
            # Nothing to list: a 404 saying how to serve adapters.
            s, _, data = plain.request("GET", "/v1/loras")
            self.assertEqual(s, 404, data)
            e = json.loads(data)["error"]
            self.assertEqual(e["code"], "not_found")
            self.assertIn("--lora-dir", e["message"])
        empty = tempfile.mkdtemp(prefix="skyreels-loras-empty-")
        try:
            with Server("--lora-dir", empty) as s:
                self.assertEqual(s.json("GET", "/v1/loras"), {"object": "list", "data": [], "has_more": False})
        finally:
            shutil.rmtree(empty, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
