#!/usr/bin/env python3
"""The drawing page in a real browser: Debian's headless Chromium driven by Selenium.

Starts `moe-mnist serve`, opens the page, draws MNIST test digits onto the canvas stroke by stroke
(pointer events, as a mouse would), reads the prediction the page shows, checks it against the label,
and saves a screenshot. Exits non-zero on any failure.

usage: test_page.py --cli build/bin/moe-mnist --model M.onnx --data data/mnist --screenshot out.png
"""
import argparse
import os
import re
import struct
import subprocess
import sys
import shutil
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

SCALE = 10  # the 280x280 canvas shows a 28x28 image at 10x


def mnist_test(data_dir, count):
    """The first `count` test images (784 bytes each) and labels, read from the IDX files."""
    with open(os.path.join(data_dir, "t10k-images-idx3-ubyte"), "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051 and rows == 28 and cols == 28, "not an MNIST image file"
        images = [f.read(784) for _ in range(count)]
    with open(os.path.join(data_dir, "t10k-labels-idx1-ubyte"), "rb") as f:
        f.read(8)
        labels = list(f.read(count))
    return images, labels


def strokes(image, threshold=90):
    """Horizontal strokes covering the inked pixels, row by row: [(x0, y, x1, y)] in image pixels."""
    out = []
    for y in range(28):
        x = 0
        while x < 28:
            if image[y * 28 + x] > threshold:
                x0 = x
                while x + 1 < 28 and image[y * 28 + x + 1] > threshold:
                    x += 1
                out.append((x0, y, x, y))
            x += 1
    return out


def start_server(cli, model):
    proc = subprocess.Popen([cli, "serve", "--model", model, "--port", "0", "--grpc-port", "0"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"listening on (http://[0-9.]+:\d+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    sys.exit("the server did not say where it listens")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,820"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def draw(driver, pad, image):
    # Offsets are from the element's centre in W3C actions.
    def at(px):
        return int(px * SCALE + SCALE / 2 - 140)

    actions = ActionChains(driver, duration=0)
    for x0, y0, x1, y1 in strokes(image):
        actions.move_to_element_with_offset(pad, at(x0), at(y0)).click_and_hold()
        actions.move_to_element_with_offset(pad, at(x1), at(y1)).release()
    actions.perform()


def shown_prediction(driver):
    """The digit the page shows once the last request has returned (the text stops changing)."""
    last, stable_since = None, time.time()
    deadline = time.time() + 15
    while time.time() < deadline:
        text = driver.find_element(By.ID, "digit").text.strip()
        status = driver.find_element(By.ID, "status").text
        if status.startswith("error"):
            raise AssertionError("page reports " + status)
        if text != last:
            last, stable_since = text, time.time()
        elif text.isdigit() and time.time() - stable_since > 0.6:
            return int(text)
        time.sleep(0.05)
    raise AssertionError("no prediction appeared (digit shows %r)" % last)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--digits", type=int, default=5)
    args = ap.parse_args()

    images, labels = mnist_test(args.data, args.digits)
    proc, url = start_server(args.cli, args.model)
    driver = None
    failures = 0
    try:
        driver = browser()
        driver.get(url + "/")
        WebDriverWait(driver, 10).until(lambda d: "KServe v2" in d.find_element(By.ID, "model").text)
        pad = driver.find_element(By.ID, "pad")
        for i, (image, label) in enumerate(zip(images, labels)):
            driver.find_element(By.ID, "clear").click()
            draw(driver, pad, image)
            got = shown_prediction(driver)
            experts = driver.find_elements(By.CSS_SELECTOR, "#experts .bar.chosen")
            bars = driver.find_elements(By.CSS_SELECTOR, "#probs .bar")
            ok = got == label and len(bars) == 10 and len(experts) >= 1
            failures += not ok
            print("test digit %d: label %d, page shows %d, %d experts highlighted: %s"
                  % (i, label, got, len(experts), "ok" if ok else "WRONG"))
        driver.save_screenshot(args.screenshot)
        print("screenshot:", args.screenshot)
        # The metrics after real traffic, checked by Prometheus' own parser.
        metrics = urllib.request.urlopen(url + "/metrics").read()
        if shutil.which("promtool"):
            check = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True)
            print("promtool check metrics:", "ok" if check.returncode == 0 else check.stdout + check.stderr)
            failures += check.returncode != 0
        else:
            print("promtool not installed: /metrics parsing is covered by the C++ service test only")
        if b'moe_mnist_http_requests_total{route="predict",code="200"}' not in metrics:
            print("the predict requests are missing from /metrics")
            failures += 1
    finally:
        if driver:
            driver.quit()
        proc.terminate()
        code = proc.wait(timeout=20)
        print("server exit code after SIGTERM:", code)
        if code != 0:
            failures += 1
    if failures:
        sys.exit("%d check(s) failed" % failures)
    print("page test passed")


if __name__ == "__main__":
    main()
