"""Drives the example portal (examples/portal: Searchkit with InstantSearch) in headless
Chromium through Selenium and ChromeDriver (Debian's `chromium` and `chromium-driver`):
serves the built page on PORT (the origin crossdex allows with CORS), types QUERY, and
reads what a user sees. Prints one JSON object: the total shown, the hits with their
highlighted words, the facet counts, and the total after ticking the first `kind`
value. Exits non-zero when the page shows an error or nothing comes.

  browser.py API_BASE PORTAL_DIST PORT QUERY
"""

import functools
import http.server
import json
import sys
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

api, dist, port, query = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=dist))
threading.Thread(target=httpd.serve_forever, daemon=True).start()

options = Options()
options.binary_location = "/usr/bin/chromium"
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
    options.add_argument(arg)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 60)


def text(css):
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text.strip() if found else ""


def settled(previous=None):
    """Waits until the shown total stops changing (and differs from `previous`)."""
    wait.until(lambda d: text("#error") or (text(".total") and text(".total") != previous))
    last, since = None, time.time()
    while time.time() - since < 0.8:
        now = (text(".total"), len(driver.find_elements(By.CSS_SELECTOR, ".hit")))
        if now != last:
            last, since = now, time.time()
        time.sleep(0.1)
    if text("#error"):
        raise SystemExit(f"the page shows an error: {text('#error')}")
    return int(text(".total").replace(",", ""))


def facets():
    out = {}
    for name in ("source", "kind", "project"):
        out[name] = {
            item.find_element(By.CSS_SELECTOR, ".ais-RefinementList-labelText").text: int(
                item.find_element(By.CSS_SELECTOR, ".ais-RefinementList-count").text.replace(",", "")
            )
            for item in driver.find_elements(By.CSS_SELECTOR, f"#{name} .ais-RefinementList-item")
        }
    return out


try:
    driver.get(f"http://127.0.0.1:{port}/index.html?api={api}")
    box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".ais-SearchBox-input"))
    box.send_keys(query)
    out = {"total": settled()}
    out["hits"] = [
        {
            "id": hit.get_attribute("data-id"),
            "marked": [m.text for m in hit.find_elements(By.CSS_SELECTOR, ".hit-body mark")],
        }
        for hit in driver.find_elements(By.CSS_SELECTOR, ".hit")
    ]
    out["facets"] = facets()
    first = driver.find_elements(By.CSS_SELECTOR, "#kind .ais-RefinementList-item")[0]
    out["refined_kind"] = first.find_element(By.CSS_SELECTOR, ".ais-RefinementList-labelText").text
    first.find_element(By.CSS_SELECTOR, "input").click()
    out["refined_total"] = settled(str(out["total"]))
    out["refined_facets"] = facets()
    print(json.dumps(out))
finally:
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            print(f"browser console: {entry.get('message')}", file=sys.stderr)
    driver.quit()
    httpd.shutdown()
