// Money, times and names as the console shows them. API times are RFC 3339 in China time
// (+08:00), dates YYYY-MM-DD, money integer fen.
import { lang } from "./i18n";

/** 48300 → "¥483", 51850 → "¥518.5", 12345 → "¥123.45". */
export function yuan(fen: number): string {
  const sign = fen < 0 ? "-" : "";
  const a = Math.abs(fen);
  const digits = a % 100 === 0 ? 0 : a % 10 === 0 ? 1 : 2;
  return `${sign}¥${(a / 100).toFixed(digits)}`;
}

const CHINA_MS = 8 * 3600_000;

/** Today's date in China (the sale window counts in China days). */
export function chinaToday(now = Date.now()): string {
  return new Date(now + CHINA_MS).toISOString().slice(0, 10);
}

export function addDays(date: string, days: number): string {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/** "2026-11-28T09:00:00+08:00" → "09:00"; any RFC 3339 time is shown in China time. */
export function hhmm(t: string | null | undefined): string {
  if (!t) return "—";
  return chinaTime(t).slice(11, 16);
}

/** RFC 3339 → "2026-11-28 09:00" in China time. */
export function dateTime(t: string | null | undefined): string {
  if (!t) return "—";
  const c = chinaTime(t);
  return `${c.slice(0, 10)} ${c.slice(11, 16)}`;
}

export function chinaTime(t: string): string {
  if (/\+08:00$/.test(t)) return t;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? t : new Date(ms + CHINA_MS).toISOString();
}

/** Date of an RFC 3339 time in China. */
export function chinaDate(t: string): string {
  return chinaTime(t).slice(0, 10);
}

export function duration(min: number): string {
  const h = Math.floor(min / 60);
  const m = String(min % 60).padStart(2, "0");
  return lang.value === "zh" ? `${h}小时${m}分` : `${h}h${m}`;
}

/** Days between the dates of two times (an overnight arrival shows "+1"). */
export function dayShift(from: string, to: string): number {
  return Math.round((Date.parse(`${chinaDate(to)}T00:00:00Z`) - Date.parse(`${chinaDate(from)}T00:00:00Z`)) / 86400_000);
}

const CLASS_ZH: Record<string, string> = {
  BUSINESS: "商务座",
  FIRST: "一等座",
  SECOND: "二等座",
  SOFT_SLEEPER: "软卧",
  HARD_SLEEPER: "硬卧",
  HARD_SEAT: "硬座",
  STANDING: "无座",
};
const CLASS_EN: Record<string, string> = {
  BUSINESS: "Business",
  FIRST: "First",
  SECOND: "Second",
  SOFT_SLEEPER: "Soft sleeper",
  HARD_SLEEPER: "Hard sleeper",
  HARD_SEAT: "Hard seat",
  STANDING: "Standing",
};
export const CLASSES = Object.keys(CLASS_ZH);

export function className(c: string): string {
  return (lang.value === "zh" ? CLASS_ZH : CLASS_EN)[c] ?? c;
}

/** The train type letter (G, D, C, Z, T, K; other codes are all digits). */
export function trainType(code: string): string {
  const c = code.charAt(0).toUpperCase();
  return /[A-Z]/.test(c) ? c : "#";
}

/** "01A" → "01A", coach 3 → "03车01A". */
export function seatLabel(coach: number, seat: string): string {
  return lang.value === "zh" ? `${String(coach).padStart(2, "0")}车${seat}` : `coach ${coach} seat ${seat}`;
}
