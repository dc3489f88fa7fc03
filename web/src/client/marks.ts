// Performance marks for the bench (bench/web_bench.py reads them with the Performance API):
// where a first load spends its time. No-ops where the Performance API is missing.
export function perfMark(name: string): void {
  const p = (globalThis as { performance?: { mark?: (n: string) => unknown } }).performance;
  try {
    p?.mark?.(`mchat-${name}`);
  } catch {
    /* marks are best effort */
  }
}
