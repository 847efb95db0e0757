import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  mail: ParsedMail;
  /** The reply the server gave to this DATA: 250, or the error code it was told to answer. */
  reply: number;
}

/**
 * A real SMTP server on loopback (smtp-server, in the test process). `replyNext(451)` makes the
 * next message be answered with that code after it was received, as a greylisting or full
 * mailbox server would.
 */
export async function startSmtp() {
  const received: ReceivedMail[] = [];
  const replies: number[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        void simpleParser(Buffer.concat(chunks)).then((mail) => {
          const code = replies.shift() ?? 250;
          received.push({ mail, reply: code });
          if (code === 250) return callback(null, 'queued as test');
          const err = Object.assign(new Error(code >= 500 ? 'mailbox unavailable' : 'greylisted, try again later'), { responseCode: code });
          callback(err);
        });
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as { port: number }).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    received,
    replyNext: (...codes: number[]) => replies.push(...codes),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
