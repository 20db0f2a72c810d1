"""Nothing lost: kill -9 the server in the middle of a job, start it again on the same data directory, and
the job resumes from its last denoising checkpoint and ends with the video an uninterrupted run makes, while
the videos finished before the kill are still listed and downloadable. A checkpoint that cannot be used is a
warning, and the job runs again from the start. Run by ctest (label server)."""
import json
import os
import re
import signal
import struct
import unittest

from harness import FAST, SLOW, Server


def checkpoint_steps(path):
    """steps_done of a denoising checkpoint (a safetensors file: 8-byte header length, JSON header)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return int(json.loads(f.read(n))["__metadata__"]["steps_done"])


class Recovery(unittest.TestCase):
    def test_kill_9_mid_job_then_restart(self):
        s = Server().start()
        data_dir = s.data_dir
        try:
            earlier = s.submit(**FAST)
            self.assertEqual(s.wait(earlier["id"])["status"], "completed")
            _, _, earlier_mp4 = s.request("GET", "/v1/videos/%s/content" % earlier["id"])
            running = s.submit(**SLOW)
            queued = s.submit(**FAST)
            s.wait_progress(running["id"], 20)
            s.kill(signal.SIGKILL)
            # The killed run left its partial video behind; the finished one is intact.
            videos = os.listdir(os.path.join(data_dir, "videos"))
            self.assertFalse([f for f in videos if f.startswith(running["id"]) and f.endswith(".mp4")], videos)
            # Its checkpoint (every step by default) is where it resumes.
            ckpt = os.path.join(data_dir, "jobs", running["id"] + ".ckpt")
            saved = checkpoint_steps(ckpt)
            self.assertGreaterEqual(saved, 1)

            s2 = Server(data_dir=data_dir).start()
            try:
                listed = {v["id"]: v for v in s2.json("GET", "/v1/videos")["data"]}
                self.assertEqual(listed[earlier["id"]]["status"], "completed")
                self.assertIn(listed[running["id"]]["status"], ("queued", "in_progress"))
                self.assertIn(queued["id"], listed)
                st, _, mp4 = s2.request("GET", "/v1/videos/%s/content" % earlier["id"])
                self.assertEqual((st, mp4), (200, earlier_mp4))
                again = s2.wait(running["id"])
                self.assertEqual(again["status"], "completed", again)
                self.assertEqual(again["seed"], running["seed"])  # the same job, not a new one
                self.assertEqual(s2.wait(queued["id"])["status"], "completed")
                st, _, mp4 = s2.request("GET", "/v1/videos/%s/content" % running["id"])
                self.assertEqual((st, mp4[4:8]), (200, b"ftyp"))
                m = re.search(r"resuming \S*%s\.ckpt after step (\d+) of %d" % (running["id"], SLOW["num_inference_steps"]),
                              s2.log())
                self.assertTrue(m, s2.log())
                self.assertGreaterEqual(int(m.group(1)), saved)
                # The resumed job's video is the one the same job makes uninterrupted, byte for byte.
                same = s2.submit(seed=running["seed"], **SLOW)
                self.assertEqual(s2.wait(same["id"])["status"], "completed")
                st, _, uninterrupted = s2.request("GET", "/v1/videos/%s/content" % same["id"])
                self.assertEqual(st, 200)
                self.assertTrue(mp4 == uninterrupted, "the resumed job's video differs from an uninterrupted run's")
                leftovers = [f for f in os.listdir(os.path.join(data_dir, "videos")) if f.endswith(".partial")]
                self.assertEqual(leftovers, [])
                ckpts = [f for f in os.listdir(os.path.join(data_dir, "jobs")) if ".ckpt" in f]
                self.assertEqual(ckpts, [], "a finished job's checkpoint goes")
            finally:
                s2.stop(remove_dir=False)
        finally:
            s.stop()

    def test_a_checkpoint_that_cannot_be_used_restarts_the_job(self):
        with Server() as s:
            running = s.submit(**SLOW)
            s.wait_progress(running["id"], 20)
            s.kill(signal.SIGKILL)
            ckpt = os.path.join(s.data_dir, "jobs", running["id"] + ".ckpt")
            self.assertTrue(os.path.exists(ckpt))
            with open(ckpt, "r+b") as f:
                f.write(b"\xff" * 16)  # a damaged header
            s2 = Server(data_dir=s.data_dir).start()
            try:
                self.assertEqual(s2.wait(running["id"])["status"], "completed")
                self.assertIn("the job starts from its first step", s2.log())
                self.assertFalse(os.path.exists(ckpt))
            finally:
                s2.stop(remove_dir=False)

    def test_a_cancelled_job_leaves_no_checkpoint(self):
        with Server() as s:
            running = s.submit(**SLOW)
            s.wait_progress(running["id"], 20)
            ckpt = os.path.join(s.data_dir, "jobs", running["id"] + ".ckpt")
            self.assertTrue(os.path.exists(ckpt))
            s.json("POST", "/v1/videos/%s/cancel" % running["id"])
            self.assertEqual(s.wait(running["id"])["status"], "failed")
            self.assertFalse(os.path.exists(ckpt))

    def test_a_damaged_record_is_set_aside(self):
        with Server() as s:
            v = s.submit(**FAST)
            s.wait(v["id"])
            s.kill(signal.SIGKILL)
            bad = os.path.join(s.data_dir, "jobs", "video_" + "a" * 32 + ".json")
            with open(bad, "w") as f:
                f.write("{\"id\": \"video_" + "a" * 32 + "\", \"status\": ")
            with open(os.path.join(s.data_dir, "jobs", "video_" + "b" * 32 + ".json"), "w") as f:
                f.write("{\"id\": \"video_" + "b" * 32 + "\", \"image_file\": \"../../etc/passwd\"}")
            s2 = Server(data_dir=s.data_dir).start()
            try:
                ids = [x["id"] for x in s2.json("GET", "/v1/videos")["data"]]
                self.assertEqual(ids, [v["id"]])
                self.assertTrue(os.path.exists(bad + ".bad"))
            finally:
                s2.stop(remove_dir=False)

    def test_one_server_per_data_directory(self):
        with Server() as s:
            other = Server(data_dir=s.data_dir)
            with self.assertRaises(RuntimeError) as e:
                other.start()
            self.assertIn("another skyreels server", str(e.exception))
            other.stop(remove_dir=False)


if __name__ == "__main__":
    unittest.main()
