// The checks the API applies to passengers' ID numbers (server: security/pii.rs), so the form
// can say what is wrong before sending.

const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK = "10X98765432";

/** GB 11643 check digit of the first 17 digits. */
export function idCardCheckDigit(first17: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(first17[i]) * WEIGHTS[i];
  return CHECK[sum % 11];
}

export type IdProblem = "shape" | "checkDigit" | "passport" | null;

/** What is wrong with an ID number, or null. Mirrors `IdType::check` on the server. */
export function idProblem(idType: string, raw: string): IdProblem {
  const id = raw.trim().toUpperCase();
  if (idType === "ID_CARD") {
    if (!/^\d{17}[\dX]$/.test(id)) return "shape";
    return idCardCheckDigit(id.slice(0, 17)) === id[17] ? null : "checkDigit";
  }
  return /^[A-Z0-9]{5,20}$/.test(id) ? null : "passport";
}
