// A shopper's walk through the shop in headless Chromium (Debian's), as a person would see it:
// product -> Buy -> login QR -> the sandbox phone scans it in a second tab -> logged in -> Buy ->
// checkout (支付宝支付 or 微信支付) -> 支付宝支付 -> sandbox cashier -> Pay -> the order page turns
// paid, then delivered, without a reload -> the admin signs in and finds the order; then, on a phone's 375 px wide screen, the
// shopper claims 直减5元 at 领券中心, finds it preselected on the tea's page at ¥53.00, sees the
// breakdown at checkout, pays ¥53.00, and the coupon is 已使用; then the shopper opens a team on
// the umbrella (开团购买) and pays, two more shoppers in browsers of their own log in, join it
// (参与拼团) and pay, and the first order page shows the team formed and the order delivered
// without a reload; every shopper page fits the phone, and ?lang=en turns the shop English; then
// 微信支付 shows the order's QR code, a scan on the sandbox's page pays it and the checkout moves
// on to the order page, delivered without a reload; on an iPhone-sized screen inside WeChat, a
// visitor's Buy logs in through the sandbox's 网页授权 page, 微信支付 pays through the bridge
// (the sandbox's stand-in) and the order page shows it paid, and 使用支付宝支付 guides to the
// phone's browser; and in the iPhone's Safari a shopper pays at the phone (WAP) cashier and sees
// the order delivered without a reload. Screenshots go to target/screenshots/.
//
// Usage: node walkthrough.mjs <shop base URL> <admin password>
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const [base, adminPassword] = process.argv.slice(2);
if (!base || !adminPassword) {
  console.error("usage: node walkthrough.mjs <base URL> <admin password>");
  process.exit(2);
}
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const shots = path.join(root, "target", "screenshots");
mkdirSync(shots, { recursive: true });

let step = 0;
let passed = 0;
async function check(name, action) {
  step += 1;
  try {
    await action();
    passed += 1;
    console.log(`ok ${step} - ${name}`);
  } catch (error) {
    console.log(`not ok ${step} - ${name}\n  ${String(error).split("\n").join("\n  ")}`);
    throw error;
  }
}
async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${String(step).padStart(2, "0")}-${name}.png`), fullPage: true });
}
function expectText(actual, wanted, what) {
  if (!actual.includes(wanted)) throw new Error(`${what}: wanted ${JSON.stringify(wanted)} in ${JSON.stringify(actual.slice(0, 300))}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"],
});
let failed = false;
try {
  // A Chinese shopper's browser: it asks for zh-CN first.
  const context = await browser.newContext({ viewport: { width: 420, height: 860 }, locale: "zh-CN" });
  // Whatever the content security policy refuses, Chromium reports on the page's console.
  const refusals = [];
  const watchPolicy = (watched) => watched.on("console", (message) => {
    if (message.text().includes("Content Security Policy")) refusals.push(message.text());
  });
  watchPolicy(context);
  const shop = await context.newPage();
  let orderId = "";

  await check("the product page shows the test product and a Buy button", async () => {
    await shop.goto(`${base}/products/100010090091`);
    expectText(await shop.textContent("h1"), "测试商品", "product name");
    expectText(await shop.textContent(".price"), "¥1.68", "price");
    await shot(shop, "product");
  });

  await check("Buy leads a visitor to the login page with a QR code", async () => {
    await shop.click("#buy");
    await shop.waitForURL((url) => url.pathname === "/login");
    const qr = await shop.waitForSelector("img#qrcode");
    const loaded = await qr.evaluate((img) => img.complete && img.naturalWidth > 0);
    if (!loaded) throw new Error("the QR image did not load");
    expectText(await shop.textContent("#login-status"), "有效期", "countdown");
    await shot(shop, "login-qr");
  });

  await check("the sandbox phone scans the code in a second tab", async () => {
    const [phone] = await Promise.all([context.waitForEvent("page"), shop.click("#sandbox-phone")]);
    await phone.waitForLoadState();
    await phone.fill("#openid", "o-browser-shopper");
    await phone.click("#scan");
    await phone.waitForSelector("#portal-reply");
    expectText(await phone.textContent("#portal-reply"), "you are now logged in", "portal reply");
    await shot(phone, "phone-scanned");
    await phone.close();
  });

  await check("the login page moves on by itself, logged in", async () => {
    await shop.waitForURL((url) => url.pathname === "/products/100010090091", { timeout: 15000 });
    expectText(await shop.textContent("header"), "o-browser-shopper", "the nav shows who is logged in");
    await shot(shop, "logged-in");
  });

  await check("Buy -> checkout offers 支付宝支付 and 微信支付 -> 支付宝支付 -> the sandbox cashier shows the order and amount", async () => {
    await shop.click("#buy");
    await shop.waitForSelector("#pay-wechat");
    expectText(await shop.textContent("#pay-choice"), "微信支付", "the WeChat Pay choice");
    await shot(shop, "checkout-choice");
    await shop.click("#pay-alipay");
    await shop.waitForURL((url) => url.pathname === "/sandbox/alipay/gateway.do", { timeout: 15000 });
    expectText(await shop.textContent(".cashier"), "¥1.68", "cashier amount");
    orderId = (await shop.textContent(".out-trade-no")).trim();
    if (!/^\d{16}$/.test(orderId)) throw new Error(`order id ${orderId}`);
    await shot(shop, "cashier");
  });

  await check("Pay returns to the order page, which turns paid and then delivered without a reload", async () => {
    await shop.click("#pay");
    await shop.waitForURL((url) => url.pathname === `/orders/${orderId}`, { timeout: 15000 });
    await shop.evaluate(() => { window.__sameDocument = true; });
    await shot(shop, "order-waiting");
    await shop.waitForFunction(() => /PAY_SUCCESS|DEAL_DONE/.test(document.getElementById("order-status").dataset.status), null, { timeout: 20000 });
    await shop.waitForFunction(() => document.getElementById("order-status").dataset.status === "DEAL_DONE", null, { timeout: 20000 });
    expectText(await shop.textContent("#order-status"), "已发货", "the status in words");
    const sameDocument = await shop.evaluate(() => window.__sameDocument === true);
    if (!sameDocument) throw new Error("the page reloaded");
    expectText(await shop.textContent("#order-status-text"), "发货", "status text");
    expectText(await shop.textContent("#order-pay-time"), "年", "the pay time as a shopper reads it");
    await shot(shop, "order-delivered");
  });

  await check("the admin signs in and finds the order with its timeline", async () => {
    const admin = await context.newPage();
    await admin.goto(`${base}/admin`);
    await admin.waitForURL((url) => url.pathname === "/admin/login");
    await admin.fill("#username", "admin");
    await admin.fill("#password", adminPassword);
    await admin.click("#sign-in");
    await admin.waitForURL((url) => url.pathname === "/admin");
    await admin.fill("input[name=order_id]", orderId);
    await admin.click("form.filters button[type=submit]");
    await admin.click(`a[href="/admin/orders/${orderId}"]`);
    expectText(await admin.textContent("#admin-status"), "DEAL_DONE", "admin status");
    expectText(await admin.textContent("main"), "payment form issued", "timeline");
    await shot(admin, "admin-order");
  });

  // A phone's screen from here on: nothing may be wider than it.
  async function fitsThePhone(page) {
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    if (wide > 375) throw new Error(`the page is ${wide} px wide on a 375 px screen`);
  }
  const tea = "100010090092";
  let couponOrderId = "";

  await check("on a phone, the shopper claims 直减5元 at 领券中心", async () => {
    await shop.setViewportSize({ width: 375, height: 812 });
    await shop.goto(`${base}/coupons`);
    await shop.click("#template-9003 button[type=submit]");
    await shop.waitForURL((url) => url.pathname === "/coupons" && url.searchParams.has("claimed"));
    expectText(await shop.textContent("#coupon-notice"), "领取成功", "claim notice");
    expectText(await shop.textContent("#mine-AVAILABLE"), "直减5", "the coupon is available");
    await fitsThePhone(shop);
    await shot(shop, "coupon-claimed");
  });

  await check("the tea's page preselects the coupon with the price it gives", async () => {
    await shop.goto(`${base}/products/${tea}`);
    expectText(await shop.textContent(".price"), "¥58.00", "list price");
    const picked = await shop.$eval("#coupon-picker", (select) => select.options[select.selectedIndex].textContent);
    expectText(picked, "直减5 · 到手价 ¥53.00", "the preselected coupon");
    expectText(await shop.textContent("#coupon-best"), "¥53.00", "the best price");
    await fitsThePhone(shop);
    await shot(shop, "product-coupon");
  });

  await check("Buy -> the checkout shows the breakdown -> the cashier charges ¥53.00", async () => {
    // On a computer the checkout page stays: the shopper chooses the channel.
    await shop.click("#buy");
    await shop.waitForSelector(".checkout");
    expectText(await shop.textContent(".breakdown-original"), "58.00", "商品原价");
    expectText(await shop.textContent(".breakdown-discount"), "-¥5.00", "优惠券");
    expectText(await shop.textContent(".breakdown-discount"), "优惠券", "优惠券 label");
    expectText(await shop.textContent("#pay-amount"), "¥53.00", "实付");
    couponOrderId = (await shop.textContent(".order-id")).trim();
    await fitsThePhone(shop);
    await shot(shop, "checkout-breakdown");
    await shop.click("#pay-alipay");
    await shop.waitForURL((url) => url.pathname === "/sandbox/alipay/gateway.do", { timeout: 15000 });
    expectText(await shop.textContent(".cashier"), "¥53.00", "cashier amount");
    expectText(await shop.textContent(".out-trade-no"), couponOrderId, "cashier order");
    await shot(shop, "cashier-coupon");
  });

  await check("Pay -> the order page turns paid at 实付 ¥53.00 and offers 申请退款", async () => {
    await shop.click("#pay");
    await shop.waitForURL((url) => url.pathname === `/orders/${couponOrderId}`, { timeout: 15000 });
    await shop.waitForFunction(() => /PAY_SUCCESS|DEAL_DONE/.test(document.getElementById("order-status").dataset.status), null, { timeout: 20000 });
    expectText(await shop.textContent("#pay-amount"), "¥53.00", "实付");
    expectText(await shop.textContent(".breakdown-discount"), "-¥5.00", "优惠券");
    await shop.waitForFunction(() => /支付成功|已发货/.test(document.getElementById("order-status").textContent), null, { timeout: 5000 });
    if (!(await shop.isVisible("#refund-order"))) throw new Error("申请退款 is not shown for a paid order");
    if (await shop.isVisible("#cancel-order")) throw new Error("取消订单 is still shown for a paid order");
    await fitsThePhone(shop);
    await shot(shop, "order-paid-coupon");
  });

  await check("the coupon shows as 已使用 at 领券中心", async () => {
    await shop.goto(`${base}/coupons`);
    expectText(await shop.textContent("#mine-USED"), "直减5", "the used coupon");
    expectText(await shop.textContent("#mine-AVAILABLE"), "无", "no coupon left available");
    await fitsThePhone(shop);
    await shot(shop, "coupon-used");
  });

  // Group buying: the shopper opens a team on the umbrella (开团购买) and pays; two more shoppers,
  // each in a browser of their own, log in and join it (参与拼团) and pay; the first order page
  // shows the team formed and the order delivered without a reload. Assertions read attributes,
  // not words.
  const umbrella = `/products/100010090095`;
  let teamId = "";
  let teamOrderId = "";

  // Chooses 支付宝支付 on the checkout page the Buy form led to and pays at the sandbox cashier;
  // the order page's id.
  async function payAtCashier(page) {
    await page.click("#pay-alipay");
    await page.waitForURL((url) => url.pathname === "/sandbox/alipay/gateway.do", { timeout: 15000 });
    expectText(await page.textContent(".cashier"), "¥69.00", "cashier amount");
    const id = (await page.textContent(".out-trade-no")).trim();
    await page.click("#pay");
    await page.waitForURL((url) => url.pathname === `/orders/${id}`, { timeout: 15000 });
    return id;
  }

  await check("the umbrella's page shows the group price and no team yet; 开团购买 opens one", async () => {
    await shop.goto(`${base}${umbrella}`);
    expectText(await shop.textContent("#group-price"), "¥69.00", "group price");
    expectText(await shop.textContent("#list-price"), "¥89.00", "list price");
    if (!(await shop.isVisible("#no-teams"))) throw new Error("no team is open yet");
    await shot(shop, "group-buy-product");
    await shop.click("#open-team");
    teamOrderId = await payAtCashier(shop);
    await shop.waitForSelector("#team[data-team-status=PROGRESS]");
    await shop.waitForFunction(() => document.getElementById("team-paid").textContent === "1", null, { timeout: 20000 });
    teamId = await shop.getAttribute("#team", "data-team-id");
    if (!/^\d+$/.test(teamId)) throw new Error(`team id ${teamId}`);
    const countdown = await shop.getAttribute("#team-countdown", "data-secs-left");
    if (!(Number(countdown) > 0)) throw new Error(`countdown ${countdown}`);
    await shop.evaluate(() => { window.__sameDocument = true; });
    await shot(shop, "group-buy-opened");
  });

  for (const [n, openid] of [[1, "o-browser-joiner-1"], [2, "o-browser-joiner-2"]]) {
    await check(`shopper ${n + 1} logs in in a browser of their own and joins the team (参与拼团) and pays`, async () => {
      const own = await browser.newContext({ viewport: { width: 420, height: 860 } });
      watchPolicy(own);
      const page = await own.newPage();
      await page.goto(`${base}${umbrella}`);
      await page.click(`#team-${teamId} .join-team`);
      await page.waitForURL((url) => url.pathname === "/login");
      const [phone] = await Promise.all([own.waitForEvent("page"), page.click("#sandbox-phone")]);
      await phone.waitForLoadState();
      await phone.fill("#openid", openid);
      await phone.click("#scan");
      await phone.waitForSelector("#portal-reply");
      await phone.close();
      await page.waitForURL((url) => url.pathname === umbrella, { timeout: 15000 });
      const countdown = await page.textContent(`#team-${teamId} .countdown`);
      if (!/^\d{2,}:\d{2}:\d{2}$/.test(countdown.trim())) throw new Error(`countdown ${countdown}`);
      await shot(page, `group-buy-join-${n}`);
      await page.click(`#team-${teamId} button.join-team`);
      const id = await payAtCashier(page);
      if (await page.getAttribute("#team", "data-team-id") !== teamId) throw new Error("joined another team");
      await shot(page, `group-buy-joined-${n}`);
      await own.close();
    });
  }

  await check("the first shopper's order page shows the team formed and the order delivered without a reload", async () => {
    await shop.waitForSelector("#team[data-team-status=COMPLETE]", { timeout: 20000 });
    expectText(await shop.textContent("#team-paid"), "3", "paid members");
    await shop.waitForSelector("#order-status.status-DEAL_DONE", { timeout: 20000 });
    const sameDocument = await shop.evaluate(() => window.__sameDocument === true);
    if (!sameDocument) throw new Error("the page reloaded");
    if (!(await shop.isHidden("#team-countdown-line"))) throw new Error("the countdown still shows");
    if (new URL(shop.url()).pathname !== `/orders/${teamOrderId}`) throw new Error(`left the order page: ${shop.url()}`);
    await shot(shop, "group-buy-formed");
  });

  await check("every shopper page fits a 375 px phone", async () => {
    const pages = ["/", `/products/${tea}`, "/orders", `/orders/${couponOrderId}`, "/coupons", "/logout", "/no-such-page"];
    for (const page of pages) {
      await shop.goto(`${base}${page}`);
      await fitsThePhone(shop);
    }
    const visitor = await browser.newPage({ viewport: { width: 375, height: 812 }, locale: "zh-CN" });
    await visitor.goto(`${base}/login`);
    await fitsThePhone(visitor);
    await shot(visitor, "login-phone");
    await visitor.close();
    await shop.goto(`${base}/orders`);
    await shot(shop, "orders-phone");
  });

  await check("?lang=en shows the shop in English, and ?lang=zh-CN back in Chinese", async () => {
    await shop.goto(`${base}/?lang=en`);
    expectText(await shop.textContent("h1"), "Products", "the English heading");
    expectText(await shop.getAttribute("html", "lang"), "en", "<html lang>");
    await shop.goto(`${base}/orders`);
    expectText(await shop.textContent("h1"), "My orders", "the choice is kept");
    await fitsThePhone(shop);
    await shot(shop, "orders-english");
    await shop.goto(`${base}/?lang=zh-CN`);
    expectText(await shop.textContent("h1"), "全部商品", "back in Chinese");
  });

  const iPhone = { viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2, locale: "zh-CN" };
  const wechatUserAgent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN";
  const safariUserAgent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

  await check("on the desktop, 微信支付 shows the QR code; a scan in the sandbox pays and the checkout moves on to the order page, delivered without a reload", async () => {
    await shop.goto(`${base}/products/100010090091`);
    await shop.click("#buy");
    await shop.click("#pay-wechat");
    await shop.waitForSelector("#wechat-pay-qr svg");
    expectText(await shop.textContent("#wechat-pay"), "请使用微信扫一扫完成支付", "the scan line");
    const wxOrderId = (await shop.textContent(".order-id")).trim();
    await fitsThePhone(shop);
    await shot(shop, "wechat-native-qr");
    const [scan] = await Promise.all([context.waitForEvent("page"), shop.click("#wechat-sandbox-scan")]);
    await scan.waitForLoadState();
    expectText(await scan.textContent(".out-trade-no"), wxOrderId, "the scanned order");
    await scan.fill("#openid", "o-browser-shopper");
    await shot(scan, "wechat-sandbox-scan");
    await scan.click("#pay");
    await scan.waitForSelector(".paid");
    await scan.close();
    await shop.waitForURL((url) => url.pathname === `/orders/${wxOrderId}`, { timeout: 15000 });
    await shop.evaluate(() => { window.__sameDocument = true; });
    await shop.waitForSelector('#order-status[data-status="DEAL_DONE"]', { timeout: 30000 });
    if (!(await shop.evaluate(() => window.__sameDocument === true))) throw new Error("the order page reloaded");
    expectText(await shop.textContent("#order-status"), "已发货", "the status in words");
    await shot(shop, "wechat-native-delivered");
  });

  const wechat = await browser.newContext({ ...iPhone, userAgent: wechatUserAgent });
  watchPolicy(wechat);
  const inWechat = await wechat.newPage();

  await check("inside WeChat on an iPhone, Buy logs in through the authorize page; 微信支付 pays through the bridge and the order page shows it paid", async () => {
    const page = inWechat;
    await page.goto(`${base}/products/100010090091`);
    await page.click("#buy");
    await page.waitForURL((url) => url.pathname === "/sandbox/weixin/connect/oauth2/authorize");
    await fitsThePhone(page);
    await shot(page, "wechat-authorize");
    await page.fill("#openid", "o-wechat-shopper");
    await page.click("#approve");
    await page.waitForURL((url) => url.pathname === "/products/100010090091");
    expectText(await page.textContent("header"), "o-wechat-shopper", "logged in inside WeChat");
    await page.click("#buy");
    await page.waitForSelector("#pay-wechat-jsapi");
    const jsapiOrderId = (await page.textContent(".order-id")).trim();
    if (await page.$("form[name=punchout_form]")) throw new Error("the cashier form is on the page inside WeChat");
    await fitsThePhone(page);
    await shot(page, "wechat-jsapi");
    await page.click("#pay-wechat-jsapi");
    await page.waitForURL((url) => url.pathname === `/orders/${jsapiOrderId}`, { timeout: 15000 });
    await page.waitForSelector('#order-status[data-status="PAY_SUCCESS"], #order-status[data-status="DEAL_DONE"]', { timeout: 30000 });
    await page.waitForSelector('#order-status[data-status="DEAL_DONE"]', { timeout: 30000 });
    await fitsThePhone(page);
    await shot(page, "wechat-jsapi-paid");
  });

  await check("inside WeChat, 使用支付宝支付 shows the guide to the phone's browser", async () => {
    const page = inWechat;
    await page.goto(`${base}/products/100010090091`);
    await page.click("#buy");
    await page.click("#pay-alipay-instead");
    await page.waitForSelector("#wechat-guide");
    expectText(await page.textContent("#wechat-guide"), "点击右上角 ··· 选择在浏览器打开", "the guide");
    const link = await page.inputValue("#pay-link");
    if (!new RegExp(`^${base}/orders/\\d{16}/pay\\?until=\\d+&sig=[0-9a-f]{64}$`).test(link)) throw new Error(`pay link ${link}`);
    if (await page.$("form[name=punchout_form]")) throw new Error("the cashier form is on the page inside WeChat");
    if (page.url().includes("/sandbox/alipay/")) throw new Error("went on to Alipay inside WeChat");
    await fitsThePhone(page);
    await shot(page, "wechat-guide");
    await wechat.close();
  });

  await check("in an iPhone's Safari, the shopper pays at the phone cashier and sees the order delivered without a reload", async () => {
    const safari = await browser.newContext({ ...iPhone, userAgent: safariUserAgent });
    watchPolicy(safari);
    const page = await safari.newPage();
    await page.goto(`${base}/products/100010090091`);
    await page.click("#buy");
    await page.waitForURL((url) => url.pathname === "/login");
    const [phone] = await Promise.all([safari.waitForEvent("page"), page.click("#sandbox-phone")]);
    await phone.waitForLoadState();
    await phone.fill("#openid", "o-safari-shopper");
    await phone.click("#scan");
    await phone.waitForSelector("#portal-reply");
    await phone.close();
    await page.waitForURL((url) => url.pathname === "/products/100010090091", { timeout: 15000 });
    await page.click("#buy");
    await page.waitForURL((url) => url.pathname === "/sandbox/alipay/gateway.do", { timeout: 15000 });
    const method = await page.getAttribute(".cashier", "data-method");
    if (method !== "alipay.trade.wap.pay") throw new Error(`the cashier opened by ${method}`);
    expectText(await page.textContent(".cashier"), "¥1.68", "cashier amount");
    const wapOrderId = (await page.textContent(".out-trade-no")).trim();
    await fitsThePhone(page);
    await shot(page, "wap-cashier");
    await page.click("#pay");
    await page.waitForURL((url) => url.pathname === `/orders/${wapOrderId}`, { timeout: 15000 });
    await page.evaluate(() => { window.__sameDocument = true; });
    await page.waitForSelector('#order-status[data-status="DEAL_DONE"]', { timeout: 30000 });
    if (!(await page.evaluate(() => window.__sameDocument === true))) throw new Error("the page reloaded");
    await fitsThePhone(page);
    await shot(page, "wap-order-delivered");
    await safari.close();
  });

  await check("no page broke the content security policy", async () => {
    if (refusals.length > 0) throw new Error(refusals.join("\n"));
  });
} catch (error) {
  failed = true;
} finally {
  await browser.close();
}
console.log(`walkthrough: ${passed} passed, ${failed ? 1 : 0} failed`);
process.exit(failed ? 1 : 0);
