// The dashboard in Firefox, driven by ui/firefox_test.go: Debian's
// firefox-esr (its path in $FIREFOX), headless, through puppeteer-core
// over WebDriver BiDi (Playwright drives only its own patched Firefox).
//
//   node firefox.mjs follow URL TOKEN ARTEFACTS SIZE
//
// It follows a short rollout: each phase becomes current in turn (a
// screenshot of each), the instances table ends on the new image, the
// checks' verdict shows; a wrong token is refused (the server answers
// 401 and the page says so); the keyboard alone opens a command's
// confirmation, Escape cancels it, and Tab and Enter confirm a pause,
// which the engine takes. The page must not be wider than a laptop's
// screen. The line protocol with the Go side is harness.mjs's; any
// failure exits 1.
import puppeteer from "puppeteer-core";
import { log, ask, check, done, result, FINAL, snap, waitFor, sleep, shooter } from "./harness.mjs";

// SIZE is the group's size: the instances in service at the end.
const [mode, url, token, dir, size] = process.argv.slice(2);
check(mode === "follow" && url && token && dir && Number(size) > 0, `usage: firefox.mjs follow URL TOKEN ARTEFACTS SIZE (got ${process.argv.slice(2)})`);

const t0 = Date.now();
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: process.env.FIREFOX,
  headless: true,
  // Kept from the network: no update checks or telemetry to wait for.
  extraPrefsFirefox: { "app.update.auto": false, "datareporting.policy.dataSubmissionEnabled": false, "toolkit.telemetry.enabled": false },
});
const version = await browser.version();
log(`${version} over ${browser.protocol}, started in ${Date.now() - t0}ms`);
const errors = [];
const controls = []; // the statuses /api/control answered
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1366, height: 900 });
  page.on("pageerror", (e) => errors.push(String(e)));
  // The refused wrong token is the one error the browser may report;
  // warnings go to the test's log, where a difference from Chromium
  // would show first.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().includes("401")) errors.push(m.text());
    else if (m.type() === "warn" || m.type() === "warning") log(`console warning: ${m.text()}`);
  });
  page.on("requestfailed", (r) => { if (!r.url().includes("/api/stream")) errors.push(`request failed: ${r.url()}`); });
  // Nothing may be fetched from anywhere but the dashboard itself.
  const origin = new URL(url).origin;
  page.on("request", (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) errors.push(`external request: ${r.url()}`); });
  page.on("response", (r) => { if (r.url().endsWith("/api/control")) controls.push(r.status()); });
  await page.goto(url);
  // Firefox takes seconds to start: the Go side starts the rollout now,
  // so that the page sees it from its first phase.
  await ask("started");
  result(await follow(page));
  check(errors.length === 0, `page errors: ${errors.join("; ")}`);
} finally {
  await browser.close();
  done();
}

// outcome waits for the page's answer to a command, and clears it.
async function outcome(page) {
  await page.waitForFunction(() => { const r = document.querySelector("#result"); return r.dataset.outcome && !r.textContent.includes("sending"); }, { timeout: 10000 });
  return page.evaluate(() => {
    const r = document.querySelector("#result");
    const out = { outcome: r.dataset.outcome, text: r.textContent };
    delete r.dataset.outcome;
    return out;
  });
}

// typeToken types the admin token into its field, as a user would.
async function typeToken(page, value) {
  await page.$eval("#token", (e) => { e.value = ""; });
  await page.type("#token", value);
}

// active names the focused element: its id, else its action.
function active(page) {
  return page.evaluate(() => { const e = document.activeElement; return e && (e.id || e.dataset.action || e.tagName); });
}

function dialogOpen(page) {
  return page.evaluate(() => { const d = document.querySelector("#confirm"); return d.open && d.matches(":modal"); });
}

// overflow is how much wider than the window the page is, in CSS pixels.
function overflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

// commandsByKeyboard runs while the change's first phase bakes.
async function commandsByKeyboard(page) {
  // A wrong token: the server refuses it and the page says so.
  await typeToken(page, "not-the-admin-token");
  await page.click('button[data-action="pause"]');
  await page.waitForSelector("#confirm", { visible: true });
  await page.click("#confirm-ok");
  let r = await outcome(page);
  check(r.outcome === "401" && /wrong admin token/.test(r.text), `wrong token: ${JSON.stringify(r)}`);
  check(controls.at(-1) === 401, `the server answered the wrong token with ${controls.at(-1)}`);
  await ask("not-paused");
  log(`wrong token refused: ${r.text}`);

  // The keyboard alone: from the token field Tab reaches Pause, Enter
  // opens the confirmation with the focus on Cancel, Escape cancels it.
  await typeToken(page, token);
  await page.keyboard.press("Tab");
  check((await active(page)) === "pause", `Tab from the token field focused ${await active(page)}, not Pause`);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#confirm", { visible: true });
  check(await dialogOpen(page), "the confirmation is not a modal dialog");
  check((await active(page)) === "confirm-cancel", `the confirmation opened with the focus on ${await active(page)}, not Cancel`);
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => document.querySelector("#result").textContent.includes("cancelled"), { timeout: 5000 });
  check(!(await dialogOpen(page)), "Escape left the confirmation open");
  const sent = controls.length;
  await ask("not-paused");
  check(controls.length === sent, "a cancelled command reached the server");
  log("Escape cancelled the confirmation; nothing sent");

  // Tab and Enter confirm; the engine pauses, then resumes.
  await page.focus('button[data-action="pause"]');
  await page.keyboard.press("Enter");
  await page.waitForSelector("#confirm", { visible: true });
  await page.keyboard.press("Tab");
  check((await active(page)) === "confirm-ok", `Tab in the confirmation focused ${await active(page)}, not the confirmation`);
  await page.keyboard.press("Enter");
  r = await outcome(page);
  check(r.outcome === "ok" && controls.at(-1) === 200, `pause: ${JSON.stringify(r)}, server ${controls.at(-1)}`);
  await waitFor(page, "the paused status", (s) => s.status === "paused", 15000);
  await ask("paused");
  await page.click('button[data-action="resume"]');
  await page.waitForSelector("#confirm", { visible: true });
  await page.click("#confirm-ok");
  r = await outcome(page);
  check(r.outcome === "ok", `resume: ${JSON.stringify(r)}`);
  await waitFor(page, "running again", (s) => s.status === "running", 15000);
  log("paused by keyboard and resumed");
}

async function follow(page) {
  const shot = shooter(page, dir);
  let s = await waitFor(page, "the change's phases", (s) => s.phases.length > 0 && s.rows > 0, 20000);
  log(`first view: ${JSON.stringify(s)}`);
  const wide = await overflow(page);
  check(wide <= 0, `at 1366x900 the page is ${wide}px wider than the window`);
  const seen = [];
  const newCounts = new Set([s.newRows]);
  let tried = false;
  const end = Date.now() + 40000;
  while (!FINAL.includes(s.status)) {
    check(Date.now() < end, `the rollout did not end on the page in time: ${JSON.stringify(s)}`);
    if (s.phase && s.phase !== seen.at(-1)) {
      seen.push(s.phase);
      await shot(`phase-${s.phase}`);
    }
    newCounts.add(s.newRows);
    if (!tried && s.phase === "canary" && s.status === "running") {
      tried = true;
      await commandsByKeyboard(page);
    }
    await sleep(100);
    s = await snap(page);
  }
  newCounts.add(s.newRows);
  await shot(`end-${s.status}`);
  check(s.status === "succeeded", `the rollout ended ${s.status}`);
  check(tried, "the page never showed the canary phase running, so the commands were not tried");
  check(seen.join(",") === "canary,half,rest", `phases seen as current, in order: ${seen}`);
  check(s.phases.every((p) => p.endsWith(":done")), `phases at the end: ${s.phases}`);
  check(s.inService === Number(size) && s.newInService === s.inService, `at the end ${s.newInService} of ${s.inService} instances in service on ami-new, want ${size}`);
  check([...newCounts].some((c) => c > 0 && c < Number(size)), `the table never showed the change part done: ${[...newCounts]}`);
  // What a reader sees: the Image column of the instances in service.
  const images = await page.$$eval('#nodes tbody tr[data-lifecycle="InService"]', (rs) => rs.map((r) => r.cells[2].textContent));
  check(images.length === Number(size) && images.every((i) => i === "ami-new"), `the Image column of the instances in service at the end: ${images}`);
  const verdict = await page.$eval('#checks tr[data-check="errors"]', (r) => r.textContent);
  check(/✓ pass/.test(verdict), `check errors: ${verdict}`);
  // uPlot drew its three charts.
  const canvases = await page.$$eval(".charts canvas", (cs) => cs.filter((c) => c.width > 0 && c.height > 0).length);
  check(canvases === 3, `${canvases} charts drawn, want 3`);
  // A smaller laptop screen: still no sideways scrolling.
  await page.setViewport({ width: 1280, height: 720 });
  await sleep(300);
  const narrow = await overflow(page);
  check(narrow <= 0, `at 1280x720 the page is ${narrow}px wider than the window`);
  return { browser: version, phases: seen, newCounts: [...newCounts].sort((a, b) => a - b), controls, updates: s.updates, ms: Date.now() - t0 };
}
