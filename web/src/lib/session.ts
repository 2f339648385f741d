// Who the console acts as. The passenger's login token lives in localStorage (it survives a
// reload); the gate's and the operator's secrets only in sessionStorage, as the issue asks:
// entered once per tab, gone when the tab closes.
import { reactive, watch } from "vue";

function load<T extends object>(storage: Storage, key: string, empty: T): T {
  try {
    const raw = storage.getItem(key);
    return raw ? { ...empty, ...(JSON.parse(raw) as Partial<T>) } : empty;
  } catch {
    return empty;
  }
}

function persist<T extends object>(storage: Storage, key: string, state: T): void {
  watch(
    () => ({ ...state }),
    (v) => storage.setItem(key, JSON.stringify(v)),
    { deep: true },
  );
}

export interface UserSession {
  token: string;
  username: string;
  expiresAt: string;
}
export const user = reactive<UserSession>(load(localStorage, "chepiao.user", { token: "", username: "", expiresAt: "" }));
persist(localStorage, "chepiao.user", user);

export function signOut(): void {
  user.token = "";
  user.expiresAt = "";
}

export interface GateSession {
  gateId: string;
  key: string;
  station: string;
  stationName: string;
}
export const gate = reactive<GateSession>(load(sessionStorage, "chepiao.gate", { gateId: "", key: "", station: "", stationName: "" }));
persist(sessionStorage, "chepiao.gate", gate);

export const admin = reactive<{ key: string }>(load(sessionStorage, "chepiao.admin", { key: "" }));
persist(sessionStorage, "chepiao.admin", admin);

/** Queue tokens by sale, from the waiting room (sessionStorage: they last 2-3 minutes). */
export interface QueuePass {
  saleId: string;
  token: string;
  expiresAt: string;
  runIds: string[];
}
export const passes = reactive<{ list: QueuePass[] }>(load(sessionStorage, "chepiao.passes", { list: [] }));
persist(sessionStorage, "chepiao.passes", passes);

/** The live queue token for a run sold through a waiting room, if the user holds one. */
export function passFor(runId: string): QueuePass | undefined {
  const now = Date.now();
  return passes.list.find((p) => p.runIds.includes(runId) && Date.parse(p.expiresAt) > now);
}

/** The waitlist wishes this browser made, per user (the API has no "list my wishes" call). */
export function wishIds(): string[] {
  return load(localStorage, `chepiao.wishes.${user.username}`, { ids: [] as string[] }).ids;
}
export function rememberWish(id: string): void {
  const ids = wishIds().filter((x) => x !== id);
  localStorage.setItem(`chepiao.wishes.${user.username}`, JSON.stringify({ ids: [id, ...ids].slice(0, 50) }));
}

/** A stable per-browser device id for the risk checks (`X-Device-Id`). */
export function deviceId(): string {
  let id = localStorage.getItem("chepiao.device");
  if (!id) {
    id = "console-" + Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem("chepiao.device", id);
  }
  return id;
}
