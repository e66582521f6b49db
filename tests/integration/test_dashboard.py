#!/usr/bin/env python3
# Integration: the dashboard at / in headless Chromium: sign in, a site comes online live, a query's results arrive, revoke, a scoped user's view, CSP and no console errors.
# SPDX-License-Identifier: MIT
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Fatal, Harness, Skip  # noqa: E402
from queryhelp import add_site, start_site  # noqa: E402

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def selenium_modules():
    try:
        import selenium  # noqa: F401
    except ImportError:
        # Debian's python3-selenium, when the python3 on PATH is another one.
        sys.path.append("/usr/lib/python3/dist-packages")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    return webdriver, Options, Service, By


def browser(h):
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        raise Skip("chromium or chromedriver missing (deploy/setup.sh installs them)")
    webdriver, Options, Service, By = selenium_modules()
    o = Options()
    o.binary_location = chromium
    for a in ("--headless=new", "--ignore-certificate-errors", "--disable-gpu",
              "--window-size=1500,900", "--no-first-run", "--disable-extensions",
              "--user-data-dir=" + h.mkdir("chromium")):
        o.add_argument(a)
    if os.geteuid() == 0:
        o.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    svc = Service(driver, log_path=h.path("logs", "chromedriver.log"))
    return webdriver.Chrome(service=svc, options=o), By


def wait_for(h, what, fn, timeout=20.0):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # the DOM changes under us: try again
            last = e
        time.sleep(0.1)
    raise Fatal("timed out waiting for %s (last error: %r)" % (what, last))


def click_in_row(h, drv, site, selector):
    """Clicks selector in the site's row in one step: live updates redraw the
    rows, so an element found first and clicked later may be gone."""
    js = ("const e = document.querySelector('tr[data-site=\"' + arguments[0] + '\"] ' + arguments[1]);"
          "if (!e) return false; e.click(); return true;")
    wait_for(h, "%s in %s's row" % (selector, site), lambda: drv.execute_script(js, site, selector))


def submit_form(drv, By, nav, fields, button):
    """Opens a view, fills its inputs (id -> text) and presses its button."""
    drv.find_element(By.ID, nav).click()
    for fid, text in fields.items():
        f = drv.find_element(By.ID, fid)
        f.clear()
        f.send_keys(text)
    drv.find_element(By.ID, button).click()


def artifacts_dir(h):
    d = os.environ.get("TETHER_ARTIFACTS") or os.path.join(
        os.environ.get("TETHER_BIN") or os.path.join(h.src_dir, "build"), "artifacts")
    d = os.path.join(d, "dashboard")
    os.makedirs(d, exist_ok=True)
    return d


def events_stream(h, hub, token, out, http2=False):
    """curl -N GET /v1/events with token; appends each line to out."""
    argv = ["curl", "-q", "-sS", "-N", "-k", "--pinnedpubkey", hub.pin, "-H",
            "Authorization: Bearer %s" % token, "--max-time", "60",
            "--http2" if http2 else "--http1.1", hub.url + "/v1/events"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=h.env)

    def read():
        for raw in p.stdout:
            out.append(raw.decode("utf-8", "replace").rstrip("\n"))
    threading.Thread(target=read, daemon=True).start()
    return p


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()

    # The static files: types, security headers, ETag revalidation.
    r = hub.curl("/", token=None)
    h.check(r.status == 200, "GET / answers 200 without a token", r)
    h.check(r.headers.get("content-type", "").startswith("text/html"), "/ is text/html", r.headers)
    h.check(r.headers.get("content-security-policy") == CSP, "/ carries the strict CSP", r.headers)
    h.check(r.headers.get("x-content-type-options") == "nosniff", "nosniff", r.headers)
    h.check(r.headers.get("referrer-policy") == "no-referrer", "no-referrer", r.headers)
    body = r.body.decode()
    h.check("<script>" not in body and "style=" not in body and "<style" not in body,
            "no inline script or style in index.html")
    js = hub.curl("/ui/app.js", token=None)
    h.check(js.status == 200 and js.headers.get("content-type", "").startswith("text/javascript"),
            "app.js is text/javascript", js)
    css = hub.curl("/ui/app.css", token=None)
    h.check(css.status == 200 and css.headers.get("content-type", "").startswith("text/css"),
            "app.css is text/css", css)
    etag = js.headers.get("etag")
    h.check(etag and etag.startswith('"'), "app.js has a strong ETag", js.headers)
    again = hub.curl("/ui/app.js", token=None, headers={"If-None-Match": etag})
    h.check(again.status == 304 and not again.body, "a matching If-None-Match gets 304", again)
    h.check(hub.curl("/ui/nope.js", token=None).status in (401, 404), "no other file is served")
    h.check(hub.curl("/v1/events", token=None).status == 401, "/v1/events needs a bearer token")

    # beta runs from the start; alpha is enrolled and starts once the page is open.
    alpha, _ = add_site(h, hub, "alpha", start=False)
    beta, _ = add_site(h, hub, "beta")
    user = hub.api("POST", "/v1/tokens", {"name": "viewer", "role": "user", "sites": ["beta"]})
    h.check(user.status == 201, "user token created", user)
    user_token = user.json()["token"]

    # A scoped /v1/events stream hears beta's changes, never alpha's.
    lines = []
    ustream = events_stream(h, hub, user_token, lines)
    # An admin's HTTP/2 stream stays open until the hub stops: the stop must
    # close it cleanly (the harness checks the exit status and sanitizers).
    alines = []
    events_stream(h, hub, hub.token, alines, http2=True)
    # A hostile label value must show as text, never as markup.
    evil = "<img src=x id=pwn onerror=window.__pwned=1>"
    r = hub.api("PATCH", "/v1/sites/beta", {"labels": {"note": evil}})
    h.check(r.status == 200, "a label with markup is stored", r)

    drv, By = browser(h)
    shots = artifacts_dir(h)
    try:
        def row(name):
            return drv.find_elements(By.CSS_SELECTOR, 'tr[data-site="%s"]' % name)

        def cell(name, cls):
            # One script: a live redraw between finding and reading cannot bite.
            return drv.execute_script(
                "const e = document.querySelector('tr[data-site=\"' + arguments[0] + '\"] td.' + arguments[1]);"
                "return e ? e.innerText : null;", name, cls)

        drv.get(hub.url + "/")
        h.check(drv.title == "tether hub", "the page loads", drv.title)
        drv.find_element(By.ID, "token").send_keys(hub.token)
        drv.find_element(By.ID, "signin-btn").click()
        wait_for(h, "beta online on the page", lambda: (cell("beta", "status") or "").startswith("online"))
        h.check((cell("alpha", "status") or "").startswith("offline"), "alpha shows offline",
                cell("alpha", "status"))
        h.check(drv.execute_script("return document.cookie") == "", "no cookie is set")
        h.check(drv.execute_script("return sessionStorage.getItem('tether.token')") == hub.token,
                "the token is kept in sessionStorage")
        h.check(drv.execute_script("return localStorage.length") == 0, "nothing in localStorage")
        wait_for(h, "the live stream up", lambda: drv.find_element(By.ID, "live").text == "live")
        wait_for(h, "the label with markup shown", lambda: evil in row("beta")[0].text)
        h.check(not drv.find_elements(By.ID, "pwn") and drv.execute_script("return window.__pwned") is None,
                "a label with markup shows as text, not as an element")
        marker = drv.execute_script("window.__noReload = 1; return window.__noReload")

        # A site coming online shows up without a reload.
        start_site(hub, alpha)
        wait_for(h, "alpha online on the page", lambda: (cell("alpha", "status") or "").startswith("online"))
        h.check(drv.execute_script("return window.__noReload") == marker, "the page was not reloaded")
        h.check(cell("alpha", "bytes") not in (None, "", "-"), "alpha shows live byte counts",
                cell("alpha", "bytes"))
        drv.save_screenshot(os.path.join(shots, "sites.png"))

        # A site's detail: its live session.
        click_in_row(h, drv, "alpha", "td.name")
        wait_for(h, "alpha's detail", lambda: drv.find_element(By.ID, "site-title").text == "alpha")
        wait_for(h, "alpha's live session", lambda: "live" in drv.find_element(By.ID, "sessions").text)

        # A federated query from the page; its results arrive over the SSE stream.
        # The sites take 1.5 s to answer: the page opens the query while it
        # runs, and the results come over GET /v1/queries/{id}/events.
        submit_form(drv, By, "nav-queries", {"q-service": "counts", "q-path": "/slow?ms=1500"}, "q-run")
        wait_for(h, "the query shown running", lambda: "running" in drv.find_element(By.ID, "query-title").text)
        h.check(not drv.find_elements(By.CSS_SELECTOR, 'tr[data-result] td.rstatus') or all(
            c.text in ("sent", "queued") for c in drv.find_elements(By.CSS_SELECTOR, "td.rstatus")),
            "no result yet while the sites work")

        def result(name):
            rs = drv.find_elements(By.CSS_SELECTOR, 'tr[data-result="%s"]' % name)
            return rs[0].text if rs else ""
        wait_for(h, "both results done", lambda: "done" in result("alpha") and "done" in result("beta"))
        h.check('"ms": 1500' in result("alpha"), "alpha's answer body is shown", result("alpha"))
        wait_for(h, "the done event", lambda: "complete" in drv.find_element(By.ID, "query-title").text)
        wait_for(h, "the query listed", lambda: drv.find_elements(By.CSS_SELECTOR, "tr[data-query]"))
        drv.save_screenshot(os.path.join(shots, "query.png"))

        # Revoke alpha from the page (two clicks): it goes offline, live.
        drv.find_element(By.ID, "nav-sites").click()
        wait_for(h, "alpha row", lambda: row("alpha"))
        # The query's delivery counts as a request of alpha's tunnel.
        n = wait_for(h, "alpha's request count", lambda: int((cell("alpha", "requests") or "-").split()[0]))
        h.check(n >= 1, "alpha shows its request count", n)
        click_in_row(h, drv, "alpha", "button.revoke")
        wait_for(h, "revoke armed", lambda: "Confirm revoke" in row("alpha")[0].text)
        click_in_row(h, drv, "alpha", "button.revoke")
        wait_for(h, "alpha revoked and offline", lambda: cell("alpha", "state") == "revoked"
                 and (cell("alpha", "status") or "").startswith("offline"))
        # It was heard seconds ago: an offline site once showed 1970 ("20794 d ago").
        st = cell("alpha", "status") or ""
        h.check(re.search(r"last seen \d+ s ago", st) is not None,
                "the revoked site's last seen is seconds ago", st)
        # A change made elsewhere (the API) reaches the page by the event stream.
        hub.api("PATCH", "/v1/sites/beta", {"labels": {"tier": "gold"}})
        wait_for(h, "beta's new label on the page", lambda: "tier=gold" in (row("beta")[0].text if row("beta") else ""))
        drv.find_element(By.ID, "nav-audit").click()
        wait_for(h, "the audit log shows the revoke", lambda: "site.revoke" in drv.find_element(By.ID, "audit").text)
        drv.find_element(By.ID, "nav-sites").click()
        wait_for(h, "sites again", lambda: row("beta"))

        # Add a site from the page: its enrollment token is shown once and works.
        drv.find_element(By.ID, "new-site").send_keys("gamma")
        drv.find_element(By.ID, "add-site").click()
        tok = wait_for(h, "gamma's enrollment token", lambda: drv.find_element(
            By.CSS_SELECTOR, "#secret code.token").text)
        wait_for(h, "gamma pending", lambda: cell("gamma", "state") == "pending")
        h.site("gamma", hub).enroll(tok)
        wait_for(h, "gamma active after its enrollment (live)", lambda: cell("gamma", "state") == "active")

        # Disable and enable from the page.
        click_in_row(h, drv, "beta", "button.disable")
        wait_for(h, "beta disabled", lambda: cell("beta", "state") == "disabled"
                 and (cell("beta", "status") or "").startswith("offline"))
        click_in_row(h, drv, "beta", "button.enable")
        wait_for(h, "beta active again", lambda: cell("beta", "state") == "active")
        # The agent, refused while disabled, comes back by itself (backoff).
        wait_for(h, "beta online again (live)", lambda: cell("beta", "status") == "online", 40)
        drv.save_screenshot(os.path.join(shots, "dashboard.png"))

        # Create a user token from the page; it is shown once and works.
        submit_form(drv, By, "nav-tokens", {"t-name": "ops-two", "t-sites": "gamma"}, "t-create")
        tok2 = wait_for(h, "the new token", lambda: drv.find_element(By.CSS_SELECTOR, "#t-secret code.token").text)
        r = hub.curl("/v1/sites", token=tok2)
        h.check(r.status == 200 and [x["name"] for x in r.json()["sites"]] == ["gamma"],
                "the page's new token works and sees only gamma", r)
        wait_for(h, "ops-two listed", lambda: "ops-two" in drv.find_element(By.ID, "tokens").text)

        admin_logs = drv.get_log("browser")

        # A scoped user: only beta, no admin controls.
        drv.find_element(By.ID, "signout").click()
        h.check(drv.execute_script("return sessionStorage.getItem('tether.token')") is None,
                "sign-out forgets the token")
        drv.find_element(By.ID, "token").send_keys(user_token)
        drv.find_element(By.ID, "signin-btn").click()
        wait_for(h, "beta for the user", lambda: row("beta"))
        h.check(not row("alpha"), "the user does not see alpha")
        h.check(drv.find_element(By.ID, "who").text == "user", "signed in as a user")
        visible = drv.execute_script(
            "return [...document.querySelectorAll('button')]"
            ".filter(b => b.offsetParent !== null).map(b => b.textContent)")
        h.check(not any(t in ("Revoke", "Disable", "Enable", "Add site", "New token", "Audit log", "Tokens")
                        for t in visible), "no admin control is shown to the user", visible)
        hub.api("PATCH", "/v1/sites/beta", {"state": "disabled"})
        wait_for(h, "beta disabled on the user's page", lambda: cell("beta", "state") == "disabled")
        user_logs = drv.get_log("browser")
    finally:
        drv.quit()

    # Console: no CSP violation, no script error. The one expected line is the
    # user's sign-in probing the admin-only /v1/tokens (403).
    bad = [e for e in admin_logs if e.get("level") == "SEVERE"]
    bad += [e for e in user_logs if e.get("level") == "SEVERE"
            and not ("/v1/tokens" in e.get("message", "") and "403" in e.get("message", ""))]
    h.check(not bad, "no console errors or CSP violations", bad)
    h.check(not any("Content Security Policy" in e.get("message", "") for e in admin_logs + user_logs),
            "no CSP report in the console")

    # The user's event stream: beta's events, none of alpha's.
    hub.api("PATCH", "/v1/sites/alpha", {"labels": {"x": "y"}})
    time.sleep(0.5)
    ustream.kill()
    ustream.wait()
    events = [json.loads(ln[5:]) for ln in lines if ln.startswith("data:")]
    h.check(any(e.get("site") == "beta" for e in events), "the user's stream heard beta", lines)
    h.check(not any(e.get("site") == "alpha" for e in events), "the user's stream never names alpha",
            lines)
    h.check(any('"site":"alpha","event":"online"' in ln for ln in alines)
            and any('"site":"alpha","event":"changed"' in ln for ln in alines)
            and any('"site":"alpha","event":"offline"' in ln for ln in alines),
            "the admin's HTTP/2 stream heard alpha online, changed and offline", alines)
    print("screenshots in %s" % shots)


Harness.main("dashboard", main)
