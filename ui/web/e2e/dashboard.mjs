// The dashboard's browser test, driven by ui/browser_test.go: headless
// Chromium (Debian's, its path in $CHROMIUM) through playwright-core.
//
//   node dashboard.mjs follow URL TOKEN ARTEFACTS
//   node dashboard.mjs scale URL ARTEFACTS
//   node dashboard.mjs engine URL ARTEFACTS N SECONDS
//
// The line protocol with the Go side is harness.mjs's. Any failure exits 1.
import { chromium } from "playwright-core";
import { join } from "node:path";
import { log, ask, check, done, result, FINAL, snap, waitFor, shooter } from "./harness.mjs";

const [mode, url, ...rest] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  page.on("pageerror", (e) => errors.push(String(e)));
  // The refused wrong token is the one error the browser may report.
  page.on("console", (m) => { if (m.type() === "error" && !m.text().includes("status of 401")) errors.push(m.text()); });
  page.on("requestfailed", (r) => { if (!r.url().includes("/api/stream")) errors.push(`request failed: ${r.url()}`); });
  // Nothing may be fetched from anywhere but the dashboard itself.
  const origin = new URL(url).origin;
  page.on("request", (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) errors.push(`external request: ${r.url()}`); });
  await page.goto(url);
  if (mode === "follow") await follow(page, rest[0], rest[1]);
  else if (mode === "engine") await engine(page, rest[0], Number(rest[1]), Number(rest[2]));
  else await scale(page, rest[0]);
  check(errors.length === 0, `page errors: ${errors.join("; ")}`);
} finally {
  await browser.close();
  done();
}

async function command(page, action, { keyboard = false } = {}) {
  await page.click(`button[data-action="${action}"]`);
  await page.locator("#confirm").waitFor({ state: "visible" });
  if (keyboard) {
    // Focus starts on Cancel; Tab reaches the confirmation.
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
  } else {
    await page.click("#confirm-ok");
  }
  await page.waitForFunction(() => { const r = document.querySelector("#result"); return r.dataset.outcome && !r.textContent.includes("sending"); });
  const out = await page.evaluate(() => ({ outcome: document.querySelector("#result").dataset.outcome, text: document.querySelector("#result").textContent }));
  await page.evaluate(() => { delete document.querySelector("#result").dataset.outcome; });
  return out;
}

async function follow(page, token, dir) {
  const shot = shooter(page, dir);
  let s = await waitFor(page, "the change's phases", (s) => s.phases.length > 0 && s.rows > 0, 20000);
  log(`first view: ${JSON.stringify(s)}`);
  await shot("start");
  const seenPhases = [];
  const newCounts = new Set([s.newRows]);
  let paused = false, last = "";
  const end = Date.now() + 50000;
  while (!FINAL.includes(s.status)) {
    check(Date.now() < end, `the rollout did not end on the page in time: ${JSON.stringify(s)}`);
    if (s.phase && s.phase !== last) {
      last = s.phase;
      seenPhases.push(s.phase);
      await shot(`phase-${s.phase}`);
    }
    newCounts.add(s.newRows);
    if (!paused && s.phase === "canary" && s.status === "running") {
      paused = true;
      // A wrong token is refused, and nothing reaches the engine.
      await page.fill("#token", "not-the-admin-token");
      let r = await command(page, "pause");
      check(r.outcome === "401" && /wrong admin token/.test(r.text), `wrong token: ${JSON.stringify(r)}`);
      await ask("not-paused");
      log(`wrong token refused: ${r.text}`);
      // Cancelling the confirmation sends nothing.
      await page.fill("#token", token);
      await page.click('button[data-action="pause"]');
      await page.keyboard.press("Escape");
      await page.waitForFunction(() => document.querySelector("#result").textContent.includes("cancelled"));
      // Pause by keyboard, as an operator without a mouse would.
      r = await command(page, "pause", { keyboard: true });
      check(r.outcome === "ok", `pause: ${JSON.stringify(r)}`);
      s = await waitFor(page, "the paused status", (s) => s.status === "paused", 15000);
      await ask("paused");
      await shot("paused");
      const held = s.where;
      await page.waitForTimeout(1500);
      s = await snap(page);
      check(s.status === "paused" && s.where === held, `the engine moved while paused: ${held} -> ${s.where}`);
      r = await command(page, "resume");
      check(r.outcome === "ok", `resume: ${JSON.stringify(r)}`);
      s = await waitFor(page, "running again", (s) => s.status === "running", 15000);
      log("paused and resumed from the page");
    }
    await page.waitForTimeout(100);
    s = await snap(page);
  }
  newCounts.add(s.newRows);
  await shot(`end-${s.status}`);
  check(s.status === "succeeded", `the rollout ended ${s.status}`);
  check(paused, "the page never showed the canary phase running, so the pause was not tried");
  check(seenPhases.length >= 3 && seenPhases[0] === "canary" && seenPhases.includes("rest"), `phases seen as current: ${seenPhases}`);
  check(s.inService === 8 && s.newInService === 8, `at the end ${s.newInService} of ${s.inService} instances in service on ami-new`);
  check([...newCounts].filter((c) => c > 0 && c < s.rows).length >= 2, `the table went through too few steps: ${[...newCounts]}`);
  check(s.phases.every((p) => p.endsWith(":done")), `phases at the end: ${s.phases}`);
  // An ended phase's deadline is a time, not a count down ("in 12m").
  const facts = await page.$$eval("#phases > li p.muted", (ps) => ps.map((p) => p.textContent));
  check(facts.every((f) => !/deadline [^·]*(, in |ago\))/.test(f)), `an ended phase counts down to its deadline: ${facts.join(" | ")}`);
  // The checks table and the event log's filter.
  const verdict = await page.textContent('#checks tr[data-check="errors"]');
  check(/pass/.test(verdict), `check errors: ${verdict}`);
  await page.selectOption("#ev-type", "pause");
  const types = await page.$$eval("#events tbody tr", (rs) => rs.map((r) => r.dataset.type));
  check(types.length >= 1 && types.every((t) => t === "pause"), `filtered events: ${types}`);
  await page.selectOption("#ev-type", "");
  await page.fill("#ev-text", "resumed by hand");
  const found = await page.$$eval("#events tbody tr", (rs) => rs.length);
  check(found === 1, `text filter found ${found} events`);
  await page.fill("#ev-text", "");
  // Every button is reachable by Tab, and the state is said in words.
  const focusable = await page.$$eval("button[data-action]", (bs) => bs.every((b) => b.tabIndex >= 0));
  check(focusable, "a command button cannot take the focus");
  result({ phases: seenPhases, newCounts: [...newCounts].sort((a, b) => a - b), updates: s.updates });
}

async function scale(page, dir) {
  const t0 = Date.now();
  let s = await waitFor(page, "1,000 rows", (s) => s.rows >= 1000, 30000);
  log(`1,000 rows shown ${Date.now() - t0}ms after the page opened`);
  const u0 = s.updates;
  // The page keeps up: it ends where the change ends, every row replaced.
  s = await waitFor(page, "the end of the change, every row on the new image", (s) => s.status === "succeeded" && s.rows === 1000 && s.newRows === 1000, 45000);
  log(`the end shown ${Date.now() - t0}ms after the page opened`);
  await page.waitForTimeout(1000); // the last update's connections
  await page.screenshot({ path: join(dir, "scale-1000.png") });
  const connections = await page.$$eval("#nodes tbody tr", (rs) => rs.reduce((a, r) => a + Number(r.cells[6].textContent), 0));
  s = await snap(page);
  result({ rows: s.rows, newRows: s.newRows, connections, updates: s.updates - u0, renderMs: await renderStats(page) });
}

// renderStats is the page's render times by part (view, instances,
// events, charts): count, mean, p95 and max in ms.
async function renderStats(page) {
  const renders = await page.evaluate(() => window.__dash.renders);
  const by = {};
  for (const r of renders) (by[r.what] ||= []).push(r.ms);
  const stats = {};
  for (const [k, v] of Object.entries(by)) {
    v.sort((a, b) => a - b);
    stats[k] = { n: v.length, mean: +(v.reduce((a, b) => a + b, 0) / v.length).toFixed(2), p95: +v[Math.floor(v.length * 0.95)].toFixed(2), max: +v[v.length - 1].toFixed(2) };
  }
  return stats;
}

// engine follows an engine replacing a group of n instances: the page
// shows the n, then ends where the change ends with the n in service on
// the new image (the old ones stay as rows, terminated), within seconds.
async function engine(page, dir, n, seconds) {
  const t0 = Date.now();
  let s = await waitFor(page, `${n} rows`, (s) => s.rows >= n, 120000);
  log(`${s.rows} rows shown ${Date.now() - t0}ms after the page opened`);
  const u0 = s.updates;
  let shown = -1;
  const end = Date.now() + seconds * 1000;
  while (!FINAL.includes(s.status)) {
    check(Date.now() < end, `the change did not end on the page in ${seconds}s: ${JSON.stringify({ ...s, phases: undefined })}`);
    if (s.newInService !== shown && s.newInService % Math.max(1, Math.floor(n / 10)) === 0) {
      shown = s.newInService;
      log(`${Date.now() - t0}ms: ${s.newInService} of ${n} in service on ami-new, ${s.rows} rows, at ${s.where.slice(0, 60)}…`);
    }
    await page.waitForTimeout(250);
    s = await snap(page);
  }
  log(`the end (${s.status}) shown ${Date.now() - t0}ms after the page opened`);
  await page.waitForTimeout(1000); // the last update's connections
  s = await snap(page);
  await page.screenshot({ path: join(dir, `engine-${n}.png`) });
  check(s.status === "succeeded", `the change ended ${s.status}`);
  check(s.newInService === n && s.inService === n, `at the end ${s.newInService} of ${s.inService} in service on ami-new, want ${n}`);
  const connections = await page.$$eval("#nodes tbody tr", (rs) => rs.reduce((a, r) => a + Number(r.cells[6].textContent), 0));
  result({ rows: s.rows, newInService: s.newInService, connections, updates: s.updates - u0, renderMs: await renderStats(page) });
}
