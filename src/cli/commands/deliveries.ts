import { adminConnection, printBody, request, shortTime as when, textTable as table } from '../client.ts';

export interface DeliveriesArgs {
  /** list | show | redrive | outbox */
  action: 'list' | 'show' | 'redrive' | 'outbox';
  ids: string[];
  all: boolean;
  state: string | undefined;
  channel: string | undefined;
  limit: string | undefined;
  json: boolean;
  url: string | undefined;
}

interface DeliveryView {
  id: string;
  channel: string;
  state: string;
  eventType: string;
  destination: string;
  attempts: number;
  maxAttempts: number;
  lastError: string | null;
  heldReason: string | null;
  createdAt: string;
}

/**
 * `herald deliveries` (the delivery log and dead-letter list), `herald deliveries <id>` (one with
 * its attempts), `herald deliveries redrive <id…>|--all` and `herald outbox` (the dev outbox).
 */
export async function deliveriesCommand(env: NodeJS.ProcessEnv, args: DeliveriesArgs): Promise<number> {
  const admin = await adminConnection(env, args.url);
  if (!admin) return 2;
  const { base, headers } = admin;
  let path: string;
  let init: RequestInit = { headers };
  const q = new URLSearchParams();
  if (args.channel) q.set('channel', args.channel);
  if (args.limit) q.set('limit', args.limit);
  switch (args.action) {
    case 'redrive':
      if (!args.all && args.ids.length === 0) {
        console.error('usage: herald deliveries redrive <deliveryId…> | --all');
        return 2;
      }
      path = '/api/deliveries/redrive';
      init = { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(args.all ? { all: true } : { ids: args.ids }) };
      break;
    case 'show':
      path = `/api/deliveries/${encodeURIComponent(args.ids[0]!)}`;
      break;
    case 'outbox':
      path = `/api/outbox${q.size ? `?${q}` : ''}`;
      break;
    default:
      if (args.state) q.set('state', args.state);
      path = `/api/deliveries${q.size ? `?${q}` : ''}`;
  }
  const f = await request(base, path, init);
  if (!f.ok) return 1;
  if (!f.res.ok || args.json || f.json === undefined || args.action === 'show') {
    printBody(f);
    return f.res.ok ? 0 : 1;
  }
  if (args.action === 'redrive') {
    const { redriven } = f.json as { redriven: string[] };
    console.log(redriven.length ? `redriven ${redriven.length}: ${redriven.join(' ')}` : 'nothing to redrive (no dead deliveries matched)');
    return 0;
  }
  if (args.action === 'outbox') {
    const { messages } = f.json as { messages: Record<string, any>[] };
    if (messages.length === 0) console.log('the outbox is empty (messages appear here when no provider is configured for a channel)');
    for (const m of messages) {
      console.log(`── ${m.channel} to ${m.to} · ${m.eventType} · ${when(m.createdAt)}${m.digestCount > 1 ? ` · digest of ${m.digestCount}` : ''}`);
      if (m.channel === 'email') console.log(`Subject: ${m.subject}\n\n${m.text}\n`);
      else console.log(`template ${m.template?.name} (${m.template?.language}): ${(m.template?.params ?? []).join(' | ')}${m.text ? `\nsession text: ${m.text}` : ''}\n`);
    }
    return 0;
  }
  const { deliveries, nextCursor } = f.json as { deliveries: DeliveryView[]; nextCursor: string | null };
  if (deliveries.length === 0) {
    console.log('no deliveries');
    return 0;
  }
  console.log(
    table([
      ['ID', 'CHANNEL', 'STATE', 'EVENT', 'TO', 'ATTEMPTS', 'CREATED', 'WHY'],
      ...deliveries.map((d) => [d.id, d.channel, d.state, d.eventType, d.destination.slice(0, 40), `${d.attempts}/${d.maxAttempts}`, when(d.createdAt), (d.lastError ?? d.heldReason ?? '').slice(0, 60)]),
    ]),
  );
  if (nextCursor) console.log(`\n(showing ${deliveries.length}; raise --limit, or page the API with ?cursor=${nextCursor})`);
  return 0;
}
