// Serves the built console (web/dist) and passes the API through to a chepiao server, the way
// the server itself does with the build it embedded (`/` and `/assets/*` from the build,
// everything else to the API). Used by the browser tests when the server embeds another build
// than web/dist holds (dist rebuilt since the binary was), and by `node
// tests/lib/console-server.mjs` to look at a build against a running server.
import { createReadStream, existsSync, statSync } from "node:fs";
import http from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
};

/** Start serving `dist` on 127.0.0.1:`port` (0: any), the rest proxied to `upstream`. */
export function startConsoleServer({ dist, upstream, port = 0 }) {
  const target = new URL(upstream);
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const file = path === "/" ? join(dist, "index.html") : path.startsWith("/assets/") ? join(dist, normalize(path)) : null;
    if (file) {
      if (!file.startsWith(dist) || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ code: 40401, message: "no such asset", request_id: "" }));
        return;
      }
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
      createReadStream(file).pipe(res);
      return;
    }
    // The Host header goes through unchanged, so URLs the API builds (mockpay's pay_url) name us.
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    up.on("error", (e) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: 50200, message: `console proxy: ${e.message}`, request_id: "" }));
    });
    req.pipe(up);
  });
  return new Promise((resolve) =>
    server.listen(port, "127.0.0.1", () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` })),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dist = fileURLToPath(new URL("../../dist", import.meta.url));
  const upstream = process.env.CHEPIAO_URL ?? "http://127.0.0.1:18080";
  const { url } = await startConsoleServer({ dist, upstream, port: Number(process.env.PORT ?? 5180) });
  console.log(`console at ${url}/ (API: ${upstream})`);
}
