/**
 * The example rules for the seed's domain (construction works: obras, flujos, pendientes).
 * herald uses this file when the project has no herald.config.ts of its own; copy it to start.
 */
import { defineConfig, rule, workflow, z } from '../src/index.ts';

const uuid = z.string().uuid();

const flujoAction = z.object({
  tenantId: uuid,
  actorId: uuid.optional(),
  flujo: z.object({ id: z.string().min(1), name: z.string().min(1) }),
  action: z.object({ name: z.string().min(1) }),
  recipientIds: z.array(uuid).min(1).max(1000),
});

export default defineConfig({
  defaultLocale: 'es',
  events: {
    // A work reached 100 %: everyone in the tenant hears about it, except whoever completed it.
    'obra.completed': rule({
      description: 'An obra (construction work) was completed',
      schema: z.object({
        tenantId: uuid,
        actorId: uuid.optional(),
        obra: z.object({ id: z.string().min(1), name: z.string().min(1), percentage: z.number().min(0).max(100) }),
      }),
      recipients: (ctx, to) => to.tenant(ctx.tenantId, { except: ctx.actorId }),
      inApp: {
        title: 'Obra completada: {{ ctx.obra.name }}',
        body: 'La obra «{{ ctx.obra.name }}» llegó al {{ ctx.obra.percentage }} %.',
        type: 'success',
        actionUrl: '/obras/{{ ctx.obra.id }}',
        data: (ctx) => ({ obraId: ctx.obra.id, percentage: ctx.obra.percentage }),
        locales: {
          en: { title: 'Work completed: {{ ctx.obra.name }}', body: '“{{ ctx.obra.name }}” reached {{ ctx.obra.percentage }} %.' },
        },
      },
      // Also by email, to the recipients who have an address (the others are skipped, with why).
      email: {
        subject: 'Obra completada: {{ ctx.obra.name }}',
        text: 'Hola{% if recipient.name %} {{ recipient.name }}{% endif %}:\n\nLa obra «{{ ctx.obra.name }}» llegó al {{ ctx.obra.percentage }} %.\n',
        html: '<p>Hola{% if recipient.name %} {{ recipient.name | escape }}{% endif %}:</p><p>La obra «<b>{{ ctx.obra.name | escape }}</b>» llegó al {{ ctx.obra.percentage }} %.</p>',
        locales: {
          en: {
            subject: 'Work completed: {{ ctx.obra.name }}',
            text: 'Hi{% if recipient.name %} {{ recipient.name }}{% endif %},\n\n“{{ ctx.obra.name }}” reached {{ ctx.obra.percentage }} %.\n',
            html: '<p>Hi{% if recipient.name %} {{ recipient.name | escape }}{% endif %},</p><p>“<b>{{ ctx.obra.name | escape }}</b>” reached {{ ctx.obra.percentage }} %.</p>',
          },
        },
      },
    }),

    // A workflow action fired: notify the users it names, never the actor.
    'flujo.action.triggered': rule({
      description: 'An action of a flujo (approval workflow) was triggered',
      schema: flujoAction,
      recipients: (ctx, to) => to.users(ctx.recipientIds, { except: ctx.actorId }),
      inApp: {
        title: '{{ ctx.action.name }} en {{ ctx.flujo.name }}',
        body: '{% if recipient.name %}{{ recipient.name }}, hay{% else %}Hay{% endif %} una acción nueva en el flujo «{{ ctx.flujo.name }}».',
        type: 'info',
        actionUrl: '/flujos/{{ ctx.flujo.id }}',
        data: (ctx) => ({ flujoId: ctx.flujo.id, action: ctx.action.name }),
        locales: { en: { title: '{{ ctx.action.name }} in {{ ctx.flujo.name }}', body: 'A new action in “{{ ctx.flujo.name }}”.' } },
      },
    }),

    // A to-do item is due: tell its assignee.
    'pendiente.due': rule({
      description: 'A pendiente (to-do) reached its due date',
      schema: z.object({
        tenantId: uuid,
        assigneeId: uuid,
        pendiente: z.object({ id: z.string().min(1), title: z.string().min(1), dueAt: z.string().optional() }),
      }),
      recipients: (ctx, to) => to.users(ctx.assigneeId),
      inApp: {
        title: 'Pendiente vencido: {{ ctx.pendiente.title }}',
        body: '{% if ctx.pendiente.dueAt %}Vencía el {{ ctx.pendiente.dueAt | date: "%d/%m/%Y" }}.{% endif %}',
        type: 'warning',
        actionUrl: '/pendientes/{{ ctx.pendiente.id }}',
        data: (ctx) => ({ pendienteId: ctx.pendiente.id }),
        locales: { en: { title: 'To-do overdue: {{ ctx.pendiente.title }}', body: '{% if ctx.pendiente.dueAt %}It was due {{ ctx.pendiente.dueAt | date: "%Y-%m-%d" }}.{% endif %}' } },
      },
      // And on WhatsApp, when the assignee has a phone number: the approved template outside the
      // 24-hour window, the free text inside it.
      whatsapp: {
        template: { name: 'pendiente_vencido', params: ['{{ recipient.name | default: "" }}', '{{ ctx.pendiente.title }}'] },
        text: 'Pendiente vencido: {{ ctx.pendiente.title }}',
      },
    }),

    // Sent by the flujo.reminder workflow when an action is still unresolved.
    'flujo.action.reminder': rule({
      description: 'An action of a flujo is still waiting for its recipients',
      schema: flujoAction,
      recipients: (ctx, to) => to.users(ctx.recipientIds, { except: ctx.actorId }),
      inApp: {
        title: 'Recordatorio: {{ ctx.action.name }} en {{ ctx.flujo.name }}',
        body: 'La acción sigue pendiente.',
        type: 'warning',
        actionUrl: '/flujos/{{ ctx.flujo.id }}',
        data: (ctx) => ({ flujoId: ctx.flujo.id, action: ctx.action.name, reminder: true }),
        locales: { en: { title: 'Reminder: {{ ctx.action.name }} in {{ ctx.flujo.name }}', body: 'The action is still open.' } },
      },
    }),
  },

  workflows: {
    // A durable workflow: after an action is triggered, wait (holding nothing in memory) for the
    // app to say it was resolved — POST /v2/notify/flujo.<id>.resolved — and remind the
    // recipients once if that has not happened within the timeout.
    'flujo.reminder': workflow<z.infer<typeof flujoAction>>({
      description: 'Reminds the recipients of a flujo action that is still open after two days',
      on: 'flujo.action.triggered',
      retries: 3,
      async run(input, step) {
        const resolved = await step.waitForEvent('await-resolution', `flujo.${input.flujo.id}.resolved`, { timeout: '2d' });
        if (!resolved.timeout) return { resolved: true, by: resolved.eventData };
        await step.send('remind', 'flujo.action.reminder', input);
        return { resolved: false, reminded: true };
      },
    }),
  },
});
