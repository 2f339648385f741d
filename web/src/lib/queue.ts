// Following one's place in a sale's waiting room. `GET /api/v1/queue/{sale}/events` is
// Server-Sent Events, but it authenticates with `Authorization: Bearer` only (no token in the
// query), which EventSource cannot send: so the stream is read with fetch, which can. If the
// stream fails or ends early, `GET /status` is polled once a second instead.
import { errorOf, headersFor, type Schemas } from "../api/client";

export type Status = Schemas["QueueStatus"];

export interface Follow {
  stop(): void;
}

/**
 * Call `onStatus` with each status until admitted (or `stop`). `onMode` says whether the live
 * stream or polling is in use; `onError` gets failures of either.
 */
export function follow(
  saleId: string,
  onStatus: (s: Status) => void,
  onMode: (m: "sse" | "poll") => void,
  onError: (e: unknown) => void,
): Follow {
  const abort = new AbortController();
  let stopped = false;
  let pollTimer: ReturnType<typeof setTimeout> | undefined;
  const base = `/api/v1/queue/${encodeURIComponent(saleId)}`;

  function seen(s: Status): boolean {
    onStatus(s);
    return !!s.admitted;
  }

  async function stream(): Promise<boolean> {
    const res = await fetch(`${base}/events`, {
      headers: headersFor("user", { Accept: "text/event-stream" }),
      signal: abort.signal,
    });
    if (!res.ok || !res.body) throw await errorOf(res);
    onMode("sse");
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buf = (buf + value).replace(/\r\n?/g, "\n");
      let cut: number;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = block
          .split("\n")
          .filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trimStart())
          .join("\n");
        if (!data) continue;
        const body = JSON.parse(data) as Status & { error?: string };
        if (body.error) throw new Error(body.error);
        if (seen(body)) return true;
      }
    }
  }

  async function poll(): Promise<void> {
    if (stopped) return;
    try {
      const res = await fetch(`${base}/status`, { headers: headersFor("user"), signal: abort.signal });
      if (!res.ok) throw await errorOf(res);
      if (seen((await res.json()) as Status)) return;
    } catch (e) {
      if (stopped) return;
      onError(e);
    }
    pollTimer = setTimeout(poll, 1000);
  }

  (async () => {
    try {
      if (await stream()) return;
    } catch (e) {
      if (stopped) return;
      onError(e);
    }
    if (!stopped) {
      onMode("poll");
      poll();
    }
  })();

  return {
    stop() {
      stopped = true;
      clearTimeout(pollTimer);
      abort.abort();
    },
  };
}
