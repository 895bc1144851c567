// A shopper's walk through the shop in headless Chromium (Debian's), as a person would see it:
// product -> Buy -> login QR -> the sandbox phone scans it in a second tab -> logged in -> Buy ->
// checkout -> sandbox cashier -> Pay -> the order page turns paid, then delivered, without a
// reload -> the admin signs in and finds the order. Screenshots go to target/screenshots/.
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
  const context = await browser.newContext({ viewport: { width: 420, height: 860 } });
  // Whatever the content security policy refuses, Chromium reports on the page's console.
  const refusals = [];
  context.on("console", (message) => {
    if (message.text().includes("Content Security Policy")) refusals.push(message.text());
  });
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
    expectText(await shop.textContent("#login-status"), "valid for", "countdown");
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

  await check("Buy -> checkout -> the sandbox cashier shows the order and amount", async () => {
    await shop.click("#buy");
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
    await shop.waitForFunction(() => /PAY_SUCCESS|DEAL_DONE/.test(document.getElementById("order-status").textContent), null, { timeout: 20000 });
    await shop.waitForFunction(() => document.getElementById("order-status").textContent === "DEAL_DONE", null, { timeout: 20000 });
    const sameDocument = await shop.evaluate(() => window.__sameDocument === true);
    if (!sameDocument) throw new Error("the page reloaded");
    expectText(await shop.textContent("#order-status-text"), "delivered", "status text");
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
