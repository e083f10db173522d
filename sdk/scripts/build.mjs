// Builds dist/: the IIFE (window.ViewPulse, embedded in ingest and served at
// /sdk/v1/viewpulse.js), the ES module (/sdk/v1/viewpulse.mjs), the read-API
// client (@viewpulse/player/api) and the .d.ts types. The output is
// deterministic, so CI rebuilds it and fails when the committed dist/ differs.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { gzipSync } from "node:zlib";

rmSync("dist", { recursive: true, force: true });
const player = { entryPoints: ["src/index.ts"], bundle: true, minify: true, target: "es2018", legalComments: "none" };
await build({ ...player, format: "iife", globalName: "ViewPulse", outfile: "dist/viewpulse.js" });
await build({ ...player, format: "esm", outfile: "dist/viewpulse.mjs" });
await build({
  entryPoints: ["src/api.ts"], bundle: true, format: "esm", platform: "neutral", target: "es2022",
  external: ["openapi-fetch"], outfile: "dist/api.mjs",
});
execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { stdio: "inherit" });

for (const f of ["viewpulse.js", "viewpulse.mjs"]) {
  const b = readFileSync("dist/" + f);
  console.log(`dist/${f}: ${b.length} B, ${gzipSync(b, { level: 9 }).length} B gzipped`);
}
