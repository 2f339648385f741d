// The refund fee as the server computes it (crates/flow/src/refunds.rs, docs/FLOW.md), to show
// before the passenger confirms; the API's answer (fee_fen, refund_fen) is shown after.
// The tiers are the server's defaults (`refund_fee_tiers`); a server configured otherwise
// answers with its own fee, which the console then shows.

export interface FeeTier {
  hours_before: number;
  percent: number;
}

export const DEFAULT_TIERS: FeeTier[] = [
  { hours_before: 8 * 24, percent: 0 },
  { hours_before: 48, percent: 5 },
  { hours_before: 24, percent: 10 },
  { hours_before: 0, percent: 20 },
];

/** Fee in fen for a ticket of `priceFen` refunded `secondsLeft` before departure. */
export function refundFee(priceFen: number, secondsLeft: number, tiers: FeeTier[] = DEFAULT_TIERS): number {
  const hoursLeft = Math.floor(secondsLeft / 3600);
  const percent = tiers.find((t) => hoursLeft >= t.hours_before)?.percent ?? 100;
  const raw = priceFen * percent; // hundredths of a fen
  const units = Math.floor(raw / 5000);
  const fee = (raw % 5000 >= 2500 ? units + 1 : units) * 50; // rounded to 0.5 yuan
  return Math.min(fee, priceFen);
}

export function feePercent(secondsLeft: number, tiers: FeeTier[] = DEFAULT_TIERS): number {
  const hoursLeft = Math.floor(secondsLeft / 3600);
  return tiers.find((t) => hoursLeft >= t.hours_before)?.percent ?? 100;
}
