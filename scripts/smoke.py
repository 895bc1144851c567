#!/usr/bin/env python3
"""Smoke test through a running shop (used by scripts/cluster through nginx): catalogue, WeChat
login via the sandbox phone, an order paid at the sandbox cashier, and the order delivered.

    python3 scripts/smoke.py http://127.0.0.1:8080
"""
import html
import http.cookiejar
import json
import sys
import time
import urllib.parse
import urllib.request

base = sys.argv[1].rstrip("/")
jar = http.cookiejar.CookieJar()
browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
passed = 0


def fetch(path, data=None, headers=None):
    url = path if path.startswith("http") else base + path
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with browser.open(request, timeout=30) as response:
        return response.status, response.read().decode()


def step(name, ok, detail=""):
    global passed
    if not ok:
        print(f"smoke: FAILED at {name}: {detail[:300]}")
        print(f"smoke: {passed} passed, 1 failed")
        sys.exit(1)
    passed += 1
    print(f"ok - {name}")


status, body = fetch("/")
step("the product list answers", status == 200 and "测试商品" in body, body)

status, body = fetch("/api/v1/login/weixin_qrcode_ticket")
ticket = json.loads(body)["data"]
step("a login ticket is issued", bool(ticket), body)

scan = urllib.parse.urlencode({"ticket": ticket, "openid": "o-smoke"}).encode()
status, body = fetch("/sandbox/weixin/phone/scan", scan)
step("the sandbox phone scans it", "logged in" in body, body)

status, body = fetch("/api/v1/login/check_login?ticket=" + urllib.parse.quote(ticket))
step("the browser is logged in", json.loads(body)["code"] == "0000", body)

status, body = fetch("/api/v1/alipay/create_pay_order", json.dumps({"productId": "100010090091"}).encode(),
                     {"Content-Type": "application/json"})
form = json.loads(body)["data"]
action = html.unescape(form.split('action="')[1].split('"')[0])
biz = html.unescape(form.split('name="biz_content" value="')[1].split('"')[0])
order_id = json.loads(biz)["out_trade_no"]
step("an order is created with a signed payment form", len(order_id) == 16, body)

status, body = fetch(action, urllib.parse.urlencode({"biz_content": biz}).encode())
step("the cashier shows the order", order_id in body and "¥1.68" in body, body)

cashier = action.split("gateway.do")[0]
status, body = fetch(f"{cashier}cashier/{order_id}/pay", b"")
step("paying returns to the order page", order_id in body, body)

deadline = time.time() + 30
state = ""
while time.time() < deadline:
    state = json.loads(fetch(f"/api/v1/orders/{order_id}")[1])["data"]["status"]
    if state == "DEAL_DONE":
        break
    time.sleep(0.3)
step("the order is paid and delivered", state == "DEAL_DONE", state)
print(f"smoke: {passed} passed, 0 failed")
