/** The logging surface the backend needs (pino-compatible). */
export interface PgLogger {
  warn(o: object, msg?: string): void;
  error(o: object, msg?: string): void;
  info(o: object, msg?: string): void;
}

/** Default when none is given: warnings and errors to stderr, info dropped. */
export const stderrLogger: PgLogger = {
  warn: (o, msg) => console.warn('[hookd postgres]', msg ?? '', o),
  error: (o, msg) => console.error('[hookd postgres]', msg ?? '', o),
  info: () => {},
};
