import pino from 'pino';

export type Logger = pino.Logger;

/** Structured JSON logs. Secrets, tokens and payloads are never passed to the logger. */
export function createLogger(level = 'info', fd: 1 | 2 = 1): Logger {
  return pino(
    {
      level,
      base: { service: 'herald' },
      redact: { paths: ['req.headers.authorization', 'req.headers["x-signature"]', 'secret', 'token'], remove: true },
    },
    pino.destination({ fd, sync: false }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
