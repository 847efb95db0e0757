/**
 * The credentials @upstash/workflow and @upstash/qstash use when QSTASH_DEV=true (the public dev
 * user of Upstash's local server). `herald dev --qstash-dev` answers with exactly these, so an app
 * in dev mode works against herald with no other setting. Development only: they are public.
 */
export const QSTASH_DEV = {
  token: 'eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0=',
  currentSigningKey: 'sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r',
  nextSigningKey: 'sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs',
  port: 8080,
} as const;
