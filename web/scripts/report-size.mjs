// Prints the gzipped size of the built JavaScript and fails over the budget (issue 16: 250 KiB).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET = Number(process.env.MCHAT_WEB_JS_BUDGET_KIB || 250) * 1024;
const dir = new URL("../dist/assets/", import.meta.url).pathname;
let total = 0;
for (const name of readdirSync(dir)) {
  if (!name.endsWith(".js")) continue;
  const size = gzipSync(readFileSync(join(dir, name)), { level: 9 }).length;
  total += size;
  console.log(`  ${name}: ${(size / 1024).toFixed(1)} KiB gzipped`);
}
console.log(`web: JavaScript ${(total / 1024).toFixed(1)} KiB gzipped (budget ${(BUDGET / 1024).toFixed(0)} KiB)`);
if (total > BUDGET) {
  console.error("web: over the JavaScript budget");
  process.exit(1);
}
