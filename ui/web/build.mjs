// Builds the dashboard's page into ../dist (embedded by package ui):
// src/main.js with uPlot and the styles into app.js and app.css,
// src/index.html copied. `go generate ./ui` runs it; the output is
// committed so that `go build` alone is enough.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
// DASHBOARD_OUT builds elsewhere: ui's test compares such a build with
// the committed one.
const out = process.env.DASHBOARD_OUT || join(here, "..", "dist");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(here, "src", "main.js") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome100", "firefox100"],
  outdir: out,
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync(join(here, "src", "index.html"), join(out, "index.html"));
