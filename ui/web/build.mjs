// Builds the dashboard's page into ../dist (embedded by package ui):
// src/main.js with uPlot and the styles into app.js and app.css,
// src/index.html copied. `go generate ./ui` runs it; the output is
// committed so that `go build` alone is enough.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
// DASHBOARD_OUT builds elsewhere: ui's test compares such a build with
// the committed one.
const out = process.env.DASHBOARD_OUT || join(here, "..", "dist");
mkdirSync(out, { recursive: true });
// The bundled chart library's name, version and licence, kept at the top
// of the bundle as its licence asks.
const uplot = JSON.parse(readFileSync(join(here, "node_modules", "uplot", "package.json"), "utf8"));
const banner = `/*! wsfleet dashboard; bundles ${uplot.name} ${uplot.version} by ${uplot.author?.name || uplot.author}, ${uplot.license} licence, ${uplot.homepage} */`;
await build({
  entryPoints: { app: join(here, "src", "main.js") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome100", "firefox100"],
  outdir: out,
  legalComments: "none",
  banner: { js: banner, css: banner },
  logLevel: "warning",
});
copyFileSync(join(here, "src", "index.html"), join(out, "index.html"));
