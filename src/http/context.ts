import type { Engine } from '../engine.ts';
import type { UserClaims } from '../inbox/as-user.ts';

/** Per-request values set by middleware. */
export type AppEnv = {
  Variables: {
    engine: Engine;
    requestId: string;
    /** The key that makes a signed request idempotent (see middleware/signed.ts). */
    idempotencyKey: string | undefined;
    rawBody: Buffer;
    claims: UserClaims;
  };
};
