/** The logging surface the backend needs (pino-compatible). */
export interface BackendLogger {
  warn(o: object, msg?: string): void;
  error(o: object, msg?: string): void;
  info(o: object, msg?: string): void;
}

/** Default when none is given: warnings and errors to stderr, info dropped. */
export const stderrLogger: BackendLogger = {
  warn: (o, msg) => console.warn('[hookd sqlite]', msg ?? '', o),
  error: (o, msg) => console.error('[hookd sqlite]', msg ?? '', o),
  info: () => {},
};
