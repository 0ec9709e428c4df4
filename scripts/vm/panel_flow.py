"""The front office through the production front, as a browser would (VM test, runs in the guest).

usage: python panel_flow.py BASE_URL CAFILE USER PASSWORD_FILE [--unlock | --lockdown]

Signs in over HTTPS verifying the installed certificate, rings from the visitor-station page,
approves the ring on the dashboard API and watches the strike pulse and relock on the station.
With --unlock it only asks for 'unlock now', with --lockdown it only starts a lockdown. Prints one
JSON line; exit 0 only if every step held.
Standard library only (it runs on the installed system, not in the test venv).
"""
import http.cookiejar
import json
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

base, cafile, user, password_file = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False            # the VM's name differs per front; the chain is still verified
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                     urllib.request.HTTPCookieProcessor(jar))
result: dict = {"base": base}


def call(path: str, data: dict | None = None, csrf: str | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(base + path, data=body, headers={"Accept": "application/json, text/html"})
    if csrf:
        req.add_header("X-CSRF-Token", csrf)
    try:
        with opener.open(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def main() -> int:
    status, page = call("/login")
    token = re.search(r'name="csrf_token" value="([^"]*)"', page).group(1)
    password = open(password_file).read().strip()
    status, page = call("/login", {"username": user, "password": password, "csrf_token": token, "next": "/"})
    csrf_m = re.search(r'<meta name="csrf-token" content="([^"]*)"', page)
    result["signed_in"] = status == 200 and csrf_m is not None
    if not result["signed_in"]:
        result["login_page"] = page[:300]
        return 1
    csrf = csrf_m.group(1)
    if "--unlock" in sys.argv:
        status, body = call("/api/unlock", {"confirm": "yes", "note": "vm test"}, csrf)
        result["unlock"] = [status, body[:200]]
        return 0 if status == 200 else 1
    if "--lockdown" in sys.argv:
        status, body = call("/api/lockdown/start", {"reason": "vm test drill"}, csrf)
        result["lockdown"] = status
        return 0 if status == 200 else 1
    result["sim_page"] = call("/sim")[0]
    status, body = call("/sim/press", {}, csrf)
    result["press"] = status
    ring = None
    deadline = time.monotonic() + 60
    while ring is None and time.monotonic() < deadline:
        ring = json.loads(call("/api/status")[1])["status"]["ring"]
        time.sleep(0.2)
    result["ring"] = ring and ring["request_id"]
    if not ring:
        return 1
    status, body = call("/api/approve", {"request_id": ring["request_id"]}, csrf)
    result["approve"] = [status, json.loads(body).get("code")]
    seen_on = seen_off_after = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not seen_off_after:
        on = json.loads(call("/sim/state")[1])["strike_on"]
        seen_on = seen_on or on
        seen_off_after = seen_on and not on
        time.sleep(0.1)
    result["strike_pulsed"], result["strike_relocked"] = seen_on, seen_off_after
    return 0 if (result["sim_page"] == 200 and status == 200 and seen_on and seen_off_after) else 1


try:
    code = main()
except Exception as exc:                 # report, never a traceback in the rig's log
    result["error"] = f"{type(exc).__name__}: {exc}"
    code = 1
print(json.dumps(result))
sys.exit(code)
