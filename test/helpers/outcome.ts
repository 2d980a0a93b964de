// How a promise settled within a bound, as a word a test can compare: for calls that must neither hang nor succeed.

export type Outcome = 'answered' | 'failed' | 'no answer';

/** 'answered' or 'failed' as `p` settles within `ms`, else 'no answer' (the promise is left to settle unobserved). */
export function outcomeWithin(p: Promise<unknown>, ms: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<Outcome>((resolve) => {
    timer = setTimeout(resolve, ms, 'no answer');
  });
  return Promise.race([
    p.then(
      (): Outcome => 'answered',
      (): Outcome => 'failed',
    ),
    late,
  ]).finally(() => clearTimeout(timer));
}
