// Save the running server's OpenAPI description as web/openapi.json (the build generates
// src/api/schema.d.ts from it). Usage: CHEPIAO_URL=http://127.0.0.1:18080 npm run spec:fetch
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const base = process.env.CHEPIAO_URL ?? "http://127.0.0.1:18080";
const res = await fetch(new URL("/openapi.json", base));
if (!res.ok) {
  console.error(`GET ${base}/openapi.json answered ${res.status}`);
  process.exit(1);
}
const spec = await res.json();
const out = fileURLToPath(new URL("../openapi.json", import.meta.url));
writeFileSync(out, JSON.stringify(spec, null, 2) + "\n");
console.log(`saved ${out}: ${Object.keys(spec.paths ?? {}).length} paths, version ${spec.info?.version}`);
