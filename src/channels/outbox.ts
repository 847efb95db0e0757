import { DeliveryFailure, type ChannelProvider } from './provider.ts';

/**
 * The development outbox: with no provider configured for a channel, a delivery is "sent" by
 * keeping it in the database, rendered as the recipient would see it (listed by
 * GET /api/admin/outbox and `herald outbox`). Nothing is dropped and nothing leaves the machine.
 */
export function outboxProvider(channel: 'email' | 'whatsapp'): ChannelProvider {
  return {
    name: 'outbox',
    host: null,
    async send({ delivery }) {
      return { providerMessageId: `outbox:${delivery.id}`, response: `captured in the development outbox (no ${channel} provider configured)` };
    },
    classify: (err) => new DeliveryFailure((err as Error).message ?? String(err), 'transient'),
  };
}
