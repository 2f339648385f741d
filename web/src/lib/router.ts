// A hash router (`#/orders/E83...?x=1`): the server only serves `/` and `/assets/*`.
import { computed, ref } from "vue";

const hash = ref(location.hash);
addEventListener("hashchange", () => {
  hash.value = location.hash;
});

export interface Route {
  path: string;
  segments: string[];
  query: Record<string, string>;
}

export function parseHash(h: string): Route {
  const raw = h.replace(/^#/, "") || "/";
  const [p, q = ""] = raw.split("?", 2);
  const path = p.startsWith("/") ? p : `/${p}`;
  return {
    path,
    segments: path.split("/").filter(Boolean).map(decodeURIComponent),
    query: Object.fromEntries(new URLSearchParams(q)),
  };
}

export const route = computed(() => parseHash(hash.value));

/** Go to a console page: `go("/orders/E83")`, `go("/book", { run: "G1-20261128" })`. */
export function go(path: string, query: Record<string, string | undefined> = {}): void {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  location.hash = `#${path}${s ? `?${s}` : ""}`;
}

export function href(path: string, query: Record<string, string | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return `#${path}${s ? `?${s}` : ""}`;
}

/** Change the address without a new history entry or a page change (e.g. a search's query). */
export function replace(path: string, query: Record<string, string | undefined> = {}): void {
  const h = href(path, query);
  history.replaceState(history.state, "", h);
  hash.value = h;
}
