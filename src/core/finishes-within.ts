/**
 * Whether `p` fulfils within `ms`: true when it does, false when the time runs out first (p keeps
 * running); rejects when p rejects first. The timer does not keep the process alive.
 */
export async function finishesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
