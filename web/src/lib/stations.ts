// Station names by telecode, looked up once (orders and tickets carry telecodes only).
import { reactive } from "vue";
import { api } from "../api/client";

export const stationNames = reactive<Record<string, string>>({});
const asked = new Set<string>();

export function remember(telecode: string, name: string): void {
  stationNames[telecode] = name;
  asked.add(telecode);
}

/** The name of a station ("北京南"), or its telecode until the lookup answers. */
export function stationName(telecode: string): string {
  if (!asked.has(telecode) && /^[A-Z]{3}$/.test(telecode)) {
    asked.add(telecode);
    api("get", "/api/v1/stations", { query: { q: telecode, limit: 5 }, as: "none" })
      .then((found) => {
        const s = found.find((x) => x.telecode === telecode);
        if (s) stationNames[telecode] = s.name;
      })
      .catch(() => asked.delete(telecode));
  }
  return stationNames[telecode] ?? telecode;
}
