// Drives headless Chromium (Debian's, through playwright-core, no browser download) to a page and
// runs its MCP client against a gateway; prints {result, console} as JSON.
//   node drive.mjs PAGE_URL GATEWAY_URL ERA
import { chromium } from "playwright-core";

const [pageUrl, gatewayUrl, era] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // The machine's network is closed: no background fetches, no sandbox as root.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  const console_ = [];
  page.on("console", (m) => console_.push({ type: m.type(), text: m.text() }));
  page.on("pageerror", (e) => console_.push({ type: "pageerror", text: String(e) }));
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.mcpReady === true, null, { timeout: 15000 });
  const result = await page.evaluate(([url, e]) => window.runMcp(url, e), [gatewayUrl, era]);
  process.stdout.write(JSON.stringify({ result, console: console_ }));
} finally {
  await browser.close();
}
