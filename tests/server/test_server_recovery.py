"""Nothing lost: kill -9 the server in the middle of a job, start it again on the same data directory, and
the job runs to completion while the videos finished before the kill are still listed and downloadable.
Run by ctest (label server)."""
import os
import signal
import unittest

from harness import FAST, SLOW, Server


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
                leftovers = [f for f in os.listdir(os.path.join(data_dir, "videos")) if f.endswith(".partial")]
                self.assertEqual(leftovers, [])
            finally:
                s2.stop(remove_dir=False)
        finally:
            s.stop()

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
