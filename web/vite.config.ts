import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

// The console's source lives in src/ (src/index.html is the entry); the build goes to dist/,
// which is committed and which the server embeds (crates/server/build.rs).
// `npm run dev` proxies the API to a running chepiao (CHEPIAO_URL, default 127.0.0.1:18080).
const target = process.env.CHEPIAO_URL ?? "http://127.0.0.1:18080";

export default defineConfig({
  root: "src",
  base: "./",
  plugins: [vue()],
  build: {
    outDir: "../dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    target: "es2020",
    modulePreload: { polyfill: false },
  },
  server: {
    proxy: {
      "/api": target,
      "/mockpay": target,
      "/openapi.json": target,
      "/healthz": target,
    },
  },
});
