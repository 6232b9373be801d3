/** The logging surface the RabbitMQ queue needs (pino-compatible). */
export interface QueueLogger {
  warn(o: object, msg?: string): void;
  error(o: object, msg?: string): void;
  info(o: object, msg?: string): void;
}

/** Default when none is given: warnings and errors to stderr, info dropped. */
export const stderrLogger: QueueLogger = {
  warn: (o, msg) => console.warn('[hookd rabbitmq]', msg ?? '', o),
  error: (o, msg) => console.error('[hookd rabbitmq]', msg ?? '', o),
  info: () => {},
};
