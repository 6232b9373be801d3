/**
 * The slice of a logger the runner and its steps use. A pino.Logger satisfies it; tests may pass
 * pino itself or any object with these four methods.
 */
export interface RunnerLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
