// A journey the console is about to order, carried in the page's address
// (`#/book?legs=G1-20261128:VNP:AOH:SECOND,G2-20261129:AOH:VNP:SECOND`), so a reload keeps it.

export interface LegChoice {
  run: string;
  from: string;
  to: string;
  cls: string;
}

export function encodeLegs(legs: LegChoice[]): string {
  return legs.map((l) => [l.run, l.from, l.to, l.cls].join(":")).join(",");
}

export function decodeLegs(s: string | undefined): LegChoice[] {
  if (!s) return [];
  return s
    .split(",")
    .map((part) => part.split(":"))
    .filter((p) => p.length === 4 && p.every(Boolean))
    .map(([run, from, to, cls]) => ({ run, from, to, cls }));
}

/** "G1-20261128" → "G1". */
export function trainOf(runId: string): string {
  return runId.replace(/-\d{8}$/, "");
}
