// Errors no page caught, shown in a banner at the top (so the page is never left blank).
import { ref } from "vue";

export const problem = ref<unknown>(null);

export function reportProblem(err: unknown): void {
  if (err instanceof Error && err.name === "AbortError") return;
  console.error(err);
  problem.value = err;
}
