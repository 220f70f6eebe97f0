// A headless Chromium session (Debian's, through playwright-core, no browser download) that a
// test drives step by step: one JSON command per line on stdin, one JSON answer per line on
// stdout. Every console message and page error is kept, for the test to require there are none.
//   {"cmd": "open", "url": ..., "colorScheme": "light"|"dark", "width": 1366, "height": 860}
//   {"cmd": "wait", "selector": ..., "timeout": ms}   {"cmd": "click", "selector": ...}
//   {"cmd": "text", "selector": ...}   {"cmd": "press", "key": "Tab"}   {"cmd": "focused"}
//   {"cmd": "screenshot", "path": ...}   {"cmd": "audit"}   {"cmd": "console"}   {"cmd": "close"}
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
const messages = [];
let page = null;

async function open({ url, colorScheme = "light", width = 1366, height = 860 }) {
  if (page) await page.context().close();
  const context = await browser.newContext({ colorScheme, viewport: { width, height } });
  page = await context.newPage();
  page.on("console", (m) => messages.push({ type: m.type(), text: m.text(), url: m.location().url }));
  page.on("pageerror", (e) => messages.push({ type: "pageerror", text: String(e) }));
  page.on("requestfailed", (r) => {
    // The event feed's request is cut when the page closes: not a failure of the page.
    if (!r.url().endsWith("/admin/api/events")) messages.push({ type: "requestfailed", text: `${r.url()} ${r.failure()?.errorText}` });
  });
  await page.goto(url);
  return {};
}

/** Accessibility basics: every control has an accessible name, every field a label, one h1,
 * headings in order, images described. */
function audit() {
  return page.evaluate(() => {
    const problems = [];
    const nameOf = (el) => (el.getAttribute("aria-label") || el.textContent || el.getAttribute("title") || "").trim();
    for (const b of document.querySelectorAll("button")) if (!nameOf(b)) problems.push(`a button without a name: ${b.outerHTML.slice(0, 80)}`);
    for (const f of document.querySelectorAll("input, select, textarea")) {
      if (!f.id || !document.querySelector(`label[for="${f.id}"]`)) problems.push(`a field without a label: ${f.outerHTML.slice(0, 80)}`);
    }
    if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
    for (const i of document.querySelectorAll('[role="img"]')) if (!i.getAttribute("aria-label")) problems.push("an image without a description");
    for (const t of document.querySelectorAll("table")) if (!t.querySelector("caption")) problems.push("a table without a caption");
    if (!document.documentElement.lang) problems.push("no lang on html");
    return problems;
  });
}

async function run(c) {
  switch (c.cmd) {
    case "open":
      return open(c);
    case "wait":
      await page.waitForSelector(c.selector, { timeout: c.timeout ?? 15000, state: c.state ?? "attached" });
      return {};
    case "click":
      await page.click(c.selector, { timeout: c.timeout ?? 10000 });
      return {};
    case "text":
      return { text: await page.textContent(c.selector, { timeout: c.timeout ?? 10000 }) };
    case "press":
      await page.keyboard.press(c.key);
      return {};
    case "focused":
      return page.evaluate(() => {
        const a = document.activeElement;
        return { tag: a?.tagName.toLowerCase(), name: (a?.getAttribute("aria-label") || a?.textContent || "").trim(), id: a?.id };
      });
    case "open_dialogs":
      return { open: await page.evaluate(() => [...document.querySelectorAll("dialog[open]")].map((d) => d.id)) };
    case "screenshot":
      await page.screenshot({ path: c.path, fullPage: c.full ?? true });
      return {};
    case "audit":
      return { problems: await audit() };
    case "console":
      return { messages };
    case "close":
      await browser.close();
      process.exit(0);
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = { ok: true, ...(await run(JSON.parse(line))) };
  } catch (e) {
    answer = { ok: false, error: String(e?.message ?? e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
