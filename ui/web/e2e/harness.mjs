// What the dashboard's browser scripts share, whichever library drives
// the browser (playwright-core for Chromium in dashboard.mjs,
// puppeteer-core for Firefox in firefox.mjs): the line protocol with the
// Go test that runs them (ui/browser_test.go) and the reading of what the
// page shows.
//
// Lines to stdout: "LOG text" for the test's log, "ASK what" when the Go
// side must check something in the engine's state (it answers "ok" or
// "fail: why" on stdin), "RESULT json" at the end.
import { createInterface } from "node:readline";
import { join } from "node:path";

const lines = createInterface({ input: process.stdin });
const answers = [];
let waiting = null;
lines.on("line", (l) => { if (waiting) { const w = waiting; waiting = null; w(l); } else answers.push(l); });

export function log(s) { process.stdout.write(`LOG ${s}\n`); }

export function result(v) { process.stdout.write(`RESULT ${JSON.stringify(v)}\n`); }

// ask has the Go side check what in the engine's state, and throws when
// it says the state is otherwise.
export async function ask(what) {
  process.stdout.write(`ASK ${what}\n`);
  const a = answers.length ? answers.shift() : await new Promise((r) => { waiting = r; });
  if (a !== "ok") throw new Error(`the engine's state: ${what}: ${a}`);
}

export function check(cond, msg) { if (!cond) throw new Error(msg); }

// done stops reading stdin, which would keep node running.
export function done() { lines.close(); }

// The statuses a change ends in.
export const FINAL = ["succeeded", "failed", "rolled-back", "aborted", "rollback-failed"];

// readPage runs in the page (both libraries' evaluate) and returns what
// it shows now.
export function readPage() {
  const cur = document.querySelector("#phases > li.current");
  const rows = [...document.querySelectorAll("#nodes tbody tr")];
  return {
    status: document.querySelector("#status").dataset.status || "",
    phase: cur ? cur.dataset.phase : "",
    phases: [...document.querySelectorAll("#phases > li")].map((l) => `${l.dataset.phase}:${l.dataset.status}`),
    where: document.querySelector("#where").textContent,
    rows: rows.length,
    newRows: rows.filter((r) => r.dataset.image === "ami-new").length,
    inService: rows.filter((r) => r.dataset.lifecycle === "InService").length,
    newInService: rows.filter((r) => r.dataset.lifecycle === "InService" && r.dataset.image === "ami-new").length,
    updates: window.__dash.updates,
  };
}

export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// snap reads what page (either library's) shows now.
export function snap(page) {
  return page.evaluate(readPage);
}

// waitFor polls the page until pred holds for what it shows, and returns
// that; it throws after ms, saying what the page showed.
export async function waitFor(page, what, pred, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const s = await snap(page);
    if (pred(s)) return s;
    if (Date.now() > end) throw new Error(`timed out after ${ms}ms waiting for ${what}; the page shows ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

// shooter returns shot(name), which saves a screenshot of the whole
// page (either library's) into dir, numbered in the order taken.
export function shooter(page, dir) {
  let n = 0;
  return async (name) => {
    const file = join(dir, `${String(n++).padStart(2, "0")}-${name.replace(/[^a-z0-9-]+/gi, "_")}.png`);
    await page.screenshot({ path: file, fullPage: true });
    log(`screenshot ${file}`);
  };
}
