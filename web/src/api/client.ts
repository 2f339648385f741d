// The one place that talks HTTP to the chepiao API: it adds the headers every call needs
// (`X-Client: console`, the passenger's token, a gate's or the operator's key, a queue token),
// and turns the API's error bodies `{code, message, request_id}` into `ApiError`s whose message
// is the API's own. Calls are typed from src/api/schema.d.ts, generated from the server's
// OpenAPI description, so an API change breaks the build.
import type { components, paths } from "./schema";
import { admin, deviceId, gate, signOut, user } from "../lib/session";

export type Schemas = components["schemas"];

export class ApiError extends Error {
  readonly status: number;
  readonly code: number;
  readonly requestId: string;
  constructor(status: number, code: number, message: string, requestId = "") {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
  /** The server has no such route (yet): 404 with code 40401. */
  get missingEndpoint(): boolean {
    return this.status === 404 && this.code === 40401;
  }
}

/** Whose credentials go with the call. */
export type As = "user" | "gate" | "admin" | "none";

export interface CallOptions {
  as?: As;
  query?: Record<string, string | number | boolean | undefined | null>;
  body?: unknown;
  queueToken?: string;
  /** Answer as text (e.g. an SVG) instead of JSON. */
  text?: boolean;
  signal?: AbortSignal;
}

/** The headers of a call; exported for the queue's event stream, which reads the body itself. */
export function headersFor(as: As, extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { "X-Client": "console", Accept: "application/json", ...extra };
  if (as === "user" && user.token) h.Authorization = `Bearer ${user.token}`;
  if (as === "user") h["X-Device-Id"] = deviceId();
  if (as === "gate") h["X-Gate-Key"] = gate.key;
  if (as === "admin") h["X-Admin-Key"] = admin.key;
  return h;
}

export function urlWith(path: string, query?: CallOptions["query"]): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** Turn a failed response into an ApiError carrying the API's message. */
export async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as Partial<Schemas["ErrorBody"]>;
    if (typeof body.message === "string") return new ApiError(res.status, body.code ?? 0, body.message, body.request_id ?? "");
  } catch {
    /* not JSON: a proxy's page, say */
  }
  return new ApiError(res.status, 0, `HTTP ${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ""}`);
}

/** One HTTP call. Most code uses `api` below, which types it from the spec. */
export async function call<T>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
  const as = opts.as ?? "user";
  const extra: Record<string, string> = {};
  if (opts.body !== undefined) extra["Content-Type"] = "application/json";
  if (opts.queueToken) extra["X-Queue-Token"] = opts.queueToken;
  let res: Response;
  try {
    res = await fetch(urlWith(path, opts.query), {
      method: method.toUpperCase(),
      headers: headersFor(as, extra),
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError(0, 0, `network error: ${(e as Error).message}`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    // An expired or otherwise dead login: forget it so the page asks to log in again.
    if (as === "user" && res.status === 401 && user.token) signOut();
    throw err;
  }
  if (res.status === 204) return undefined as T;
  if (opts.text) return (await res.text()) as T;
  const body = await res.text();
  return (body ? JSON.parse(body) : undefined) as T;
}

// ---- typing from the spec ----------------------------------------------------------------
type Method = "get" | "post" | "put" | "delete";
type MethodsOf<P extends keyof paths> = {
  [M in Method]: paths[P][M] extends { responses: unknown } ? M : never;
}[Method];
type Op<P extends keyof paths, M extends Method> = paths[P][M];
type JsonOf<R> = R extends { content: { "application/json": infer J } } ? J : never;
type Success<O> = O extends { responses: infer R } ? JsonOf<R[Extract<keyof R, 200 | 201 | 202>]> : never;
type Present<X> = [Exclude<X, undefined>] extends [never] ? never : Exclude<X, undefined>;
type PathParams<O> = O extends { parameters: { path?: infer X } } ? Present<X> : never;
type QueryOf<O> = O extends { parameters: { query?: infer X } } ? Present<X> : never;
type BodyOf<O> = O extends { requestBody: { content: { "application/json": infer B } } } ? B : never;

type Typed<O> = Omit<CallOptions, "query" | "body"> &
  ([PathParams<O>] extends [never] ? { path?: never } : { path: PathParams<O> }) &
  ([QueryOf<O>] extends [never] ? { query?: never } : {} extends QueryOf<O> ? { query?: QueryOf<O> } : { query: QueryOf<O> }) &
  ([BodyOf<O>] extends [never] ? { body?: never } : { body: BodyOf<O> });

/**
 * A call typed by the OpenAPI description: `api("get", "/api/v1/orders/{order_no}", { path: { order_no } })`
 * answers `OrderOut`; a path, parameter or body the spec does not have is a compile error.
 */
export function api<P extends keyof paths, M extends MethodsOf<P>>(
  method: M,
  path: P,
  ...[opts]: {} extends Typed<Op<P, M>> ? [Typed<Op<P, M>>?] : [Typed<Op<P, M>>]
): Promise<Success<Op<P, M>>> {
  const o = (opts ?? {}) as CallOptions & { path?: Record<string, string | number> };
  const filled = (path as string).replace(/\{(\w+)\}/g, (_, k: string) => encodeURIComponent(String(o.path?.[k] ?? "")));
  return call(method, filled, o);
}

/** A same-origin path for an absolute URL the API handed out (e.g. mockpay's pay_url). */
export function sameOrigin(url: string): string {
  try {
    const u = new URL(url, location.href);
    return u.pathname + u.search;
  } catch {
    return url;
  }
}
