"""The web page in a real browser: headless Debian Chromium driven by Selenium (Debian's python3-selenium and
chromium-driver). Loads the page from `skyreels serve --demo`, submits a prompt with the keyboard, watches
the progress bar move and the preview of the video forming appear, sees the finished video ready to play
(H.264: canPlayType) in the preview's place, cancels a second job, deletes one from the history, and checks
the layout on a narrow screen; picks a LoRA adapter and its strength from the server's --lora-dir in the page
and finds them in the job the page submitted. Saves two screenshots (during and
after a job) in $SKYREELS_SCREENSHOT_DIR (default: the working directory). Exits 77 (ctest: skipped) only
when no Chromium is installed. Run by ctest (label browser)."""
import os
import shutil
import sys
import tempfile
import time
import unittest

from harness import Server, adapter

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = os.environ.get("SKYREELS_SCREENSHOT_DIR", os.getcwd())


def until(fn, timeout=60, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Page(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
        cls.loras = tempfile.mkdtemp(prefix="skyreels-loras-")
        for name, seed in (("style.safetensors", 1), ("ink.safetensors", 2)):
            with open(os.path.join(cls.loras, name), "wb") as f:
                f.write(adapter(seed=seed))
        os.symlink("/etc/passwd", os.path.join(cls.loras, "outside.safetensors"))  # never offered
        cls.server = Server("--lora-dir", cls.loras).start()
        cls.profile = tempfile.mkdtemp(prefix="skyreels-chromium-")
        o = Options()
        o.binary_location = CHROMIUM
        # As root (CI) Chromium needs --no-sandbox; a fresh profile, and no traffic of its own.
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                  "--user-data-dir=" + cls.profile, "--window-size=1280,900", "--autoplay-policy=no-user-gesture-required"):
            o.add_argument(a)
        cls.d = webdriver.Chrome(service=Service(DRIVER), options=o)
        cls.d.set_page_load_timeout(30)
        cls.url = "http://127.0.0.1:%d/" % cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.d.quit()
        cls.server.stop()
        shutil.rmtree(cls.profile, ignore_errors=True)
        shutil.rmtree(cls.loras, ignore_errors=True)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def by_id(self, i):
        from selenium.webdriver.common.by import By
        return self.d.find_element(By.ID, i)

    def click(self, css):
        # The history is redrawn every few seconds: find the button again if it was replaced under us.
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By
        for _ in range(5):
            try:
                return self.d.find_element(By.CSS_SELECTOR, css).click()
            except StaleElementReferenceException:
                time.sleep(0.1)
        raise AssertionError("could not click " + css)

    def set_value(self, i, value):
        el = self.by_id(i)
        el.clear()
        el.send_keys(str(value))

    def test_a_job_from_the_page(self):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        d = self.d
        d.get(self.url)
        until(lambda: "skyreels.cpp" in self.by_id("server-info").text, what="the server's name in the header")
        # The demo's defaults came from /v1/models.
        until(lambda: self.by_id("size").get_attribute("value") == "128x128",
              what="the demo's size from /v1/models in the size field")
        self.set_value("prompt", "FPS-24, A lighthouse at dusk, waves rolling in")
        self.set_value("steps", 40)
        self.set_value("seed", 1234)
        # Keyboard only: the Generate button is reached and pressed from the keyboard.
        self.by_id("generate").send_keys(Keys.ENTER)
        seen = set()
        shot_running = os.path.join(SHOTS, "server-page-running.png")
        took = False
        preview_seen = 0  # the live preview shown, loaded, while the job ran
        end = time.time() + 120
        while time.time() < end:
            p = int(self.js("return document.getElementById('progress').value"))
            seen.add(p)
            if p < 90 and self.js("var i = document.getElementById('live-preview'); return !i.closest('figure')"
                                  ".hidden && i.complete && i.naturalWidth > 0"):
                preview_seen += 1
            if not took and 35 <= p <= 75:
                d.save_screenshot(shot_running)
                took = True
            if p >= 100:
                break
            time.sleep(0.02)
        moving = sorted(x for x in seen if 0 < x < 100)
        self.assertGreaterEqual(len(moving), 3, "the progress bar did not move: %s" % sorted(seen))
        self.assertTrue(took, "no screenshot during the job: %s" % sorted(seen))
        self.assertGreater(preview_seen, 0, "the preview of the video forming never appeared")
        status = self.by_id("status-text").text
        # The video plays in the page.
        can = self.js("return document.getElementById('player').canPlayType('video/mp4; codecs=\"avc1.64001F\"')")
        self.assertIn(can, ("probably", "maybe"), "this Chromium cannot play H.264")
        until(lambda: self.js("var v = document.getElementById('player'); return v.readyState >= 2 && v.duration > 0"),
              what="the video to be ready to play")
        until(lambda: "Done" in self.by_id("status-text").text, what="'Done' in the status line (was %r)" % status)
        self.assertTrue(self.js("return document.getElementById('live-preview-box').hidden"),
                        "the preview stayed after the video was done")
        link = self.by_id("download")
        self.assertTrue(link.is_displayed())
        self.assertIn("/content", link.get_attribute("href"))
        until(lambda: self.js("var i = document.querySelector('#history li img'); return i && i.complete && "
                              "i.naturalWidth > 0"), what="the history's thumbnail")
        time.sleep(0.5)  # let the player draw its first frame and controls
        d.save_screenshot(os.path.join(SHOTS, "server-page-done.png"))
        first = self.js("return document.querySelector('#history li').dataset.id")
        until(lambda: "1234" in (self.js("return document.querySelector('#history li .meta').textContent") or ""),
              what="the job's seed in the history")

        # A second job, cancelled from the page.
        self.set_value("prompt", "FPS-24, A second video to cancel")
        self.by_id("generate").click()
        until(lambda: int(self.js("return document.getElementById('progress').value")) > 10,
              what="the second job to start")
        self.by_id("cancel").send_keys(Keys.ENTER)
        until(lambda: "Cancelled" in self.by_id("status-text").text, what="the page to say it was cancelled")
        second = until(lambda: self.js("return [...document.querySelectorAll('#history li')].filter("
                                       "li => li.textContent.includes('cancelled')).map(li => li.dataset.id)"),
                       what="the cancelled job in the history")[0]

        # Delete it from the history.
        self.click("#history li[data-id='%s'] button.delete" % second)
        until(lambda: not d.find_elements(By.CSS_SELECTOR, "#history li[data-id='%s']" % second),
              what="the deleted job to leave the history")
        self.assertEqual(self.server.request("GET", "/v1/videos/" + second)[0], 404)
        self.assertEqual(self.server.request("GET", "/v1/videos/" + first)[0], 200)

        # Re-run fills the form with the job's settings and makes the same video again.
        self.click("#history li[data-id='%s'] button.rerun" % first)
        until(lambda: len(d.find_elements(By.CSS_SELECTOR, "#history li")) == 2, what="the re-run in the history")
        until(lambda: self.by_id("seed").get_attribute("value") == "1234", what="the re-run's seed in the form")

        # A narrow screen: nothing wider than the window.
        d.set_window_size(390, 844)
        time.sleep(0.3)
        self.assertLessEqual(self.js("return document.documentElement.scrollWidth"),
                             self.js("return window.innerWidth") + 1)
        d.set_window_size(1280, 900)

    def test_image_mode_shows_a_preview(self):
        from harness import png_bytes
        d = self.d
        d.get(self.url)
        until(lambda: "skyreels.cpp" in self.by_id("server-info").text, what="the page to load")
        self.by_id("mode-i2v").click()
        self.assertTrue(self.by_id("image").is_displayed())
        path = os.path.join(self.profile, "first.png")
        with open(path, "wb") as f:
            f.write(png_bytes(48, 32))
        self.by_id("image").send_keys(path)
        until(lambda: self.by_id("preview").is_displayed(), what="the image preview")
        self.set_value("steps", 2)
        self.set_value("frames", 5)
        self.set_value("size", "64x64")
        self.by_id("generate").click()
        until(lambda: "Done" in self.by_id("status-text").text, what="the image-to-video job")
        until(lambda: "i2v" in (self.js("return document.querySelector('#history li .meta').textContent") or ""),
              what="the i2v job in the history")

    def test_loras_picked_in_the_page(self):
        from selenium.webdriver.common.by import By
        d = self.d
        d.get(self.url)
        until(lambda: "skyreels.cpp" in self.by_id("server-info").text, what="the page to load")
        # The adapters of --lora-dir, from GET /v1/loras: the two files, not the link leading out.
        until(lambda: self.by_id("lora-box").is_displayed(), what="the LoRA controls")
        names = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".lora-row label")]
        self.assertEqual(names, ["ink.safetensors", "style.safetensors"])
        # Pick style.safetensors at strength 0.5: its row's checkbox and number field.
        row = d.find_elements(By.CSS_SELECTOR, ".lora-row")[1]
        row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
        strength = row.find_element(By.CSS_SELECTOR, ".lora-strength")
        strength.clear()
        strength.send_keys("0.5")
        self.set_value("prompt", "FPS-24, A styled cat")
        self.set_value("steps", 2)
        self.set_value("frames", 5)
        self.set_value("size", "64x64")
        self.by_id("generate").click()
        until(lambda: "Done" in self.by_id("status-text").text, what="the job with an adapter")
        # The job the page sent carries the adapter and strength picked, and the history shows them.
        vid = until(lambda: self.js("var li = [...document.querySelectorAll('#history li')].find("
                                    "li => li.textContent.includes('A styled cat')); return li && li.dataset.id"),
                    what="the job in the history")
        job = self.server.json("GET", "/v1/videos/" + vid)
        self.assertEqual(job["loras"], [{"file": "style.safetensors", "strength": 0.5}])
        self.assertFalse(job["lora_ignore_unmatched"])
        until(lambda: "LoRA style.safetensors" in (self.js(
            "return document.querySelector('#history li[data-id=\"%s\"] .meta').textContent" % vid) or ""),
            what="the adapter in the history")
        # Unticked again, the next job has none.
        row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
        self.set_value("prompt", "FPS-24, A plain cat")
        self.by_id("generate").click()
        until(lambda: "Done" in self.by_id("status-text").text and self.js(
            "return document.querySelector('#history li .prompt').textContent") == "FPS-24, A plain cat",
            what="the job without an adapter")
        plain = self.js("return document.querySelector('#history li').dataset.id")
        self.assertNotIn("loras", self.server.json("GET", "/v1/videos/" + plain))


if __name__ == "__main__":
    if not CHROMIUM:
        print("browser test SKIPPED: no Chromium installed (Debian: apt-get install chromium chromium-driver "
              "python3-selenium; scripts/install-deps.sh does it)")
        sys.exit(77)
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("Chromium is installed but Selenium is not: apt-get install python3-selenium chromium-driver "
              "(scripts/install-deps.sh)")
        sys.exit(1)
    unittest.main()
