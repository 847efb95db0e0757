// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Liquid } from 'liquidjs';
import { compileTemplate, TemplateError } from '../../src/rules/templates.ts';

/**
 * herald renders plain templates (text and `{{ a.b }}`) without Liquid. Every case here is
 * rendered both ways — herald's compileTemplate and a plain Liquid with herald's options — and
 * must come out the same.
 */
const liquid = new Liquid({ strictFilters: true, ownPropertyOnly: true, parseLimit: 64 * 1024, renderLimit: 200, memoryLimit: 1024 * 1024 });

class Box {
  item = 'boxed';
}
const inherited = Object.create({ item: 'from the prototype' });
const nullProto = Object.assign(Object.create(null), { item: 'no prototype' });

const scopes: Record<string, unknown>[] = [
  { ctx: { item: 'it-1', seq: 7, ok: true, none: null, nested: { deep: { name: 'Zoë «quoted» & <b>' } } } },
  { ctx: { item: 3.5, seq: -0, ok: false, nested: { deep: null } } },
  { ctx: { item: ['a', 'b'], seq: { toString: () => 'custom' }, nested: 'a string' } },
  { ctx: { item: new Box(), seq: new Date(0), nested: { deep: [1, 2] } } },
  { ctx: inherited },
  { ctx: nullProto },
  { ctx: { item: 'x', size: 'own size', first: 'own first' }, user: { name: 'Ana' } },
  { ctx: 'not an object' },
  {},
];

const templates = [
  'Item {{ ctx.item }} is ready',
  '{{ctx.item}}{{ctx.seq}}',
  'Seq {{ ctx.seq }}, ok {{ ctx.ok }}, none [{{ ctx.none }}], missing [{{ ctx.missing.deeper }}]',
  '{{ ctx.nested.deep.name }} / {{ ctx.nested.deep }} / {{ ctx.nested }}',
  '{{ user.name }} {{ ctx }}',
  'plain text, no output at all',
  '',
  // Left to Liquid: filters, tags, trim markers, literals, special properties.
  '{{ ctx.item | upcase }}',
  '{% if ctx.ok %}yes{% else %}no{% endif %} {{ ctx.item }}',
  '  {{- ctx.item -}}  ',
  '{{ true }} {{ nil }} {{ empty }}',
  '{{ ctx.item.size }} {{ ctx.item.first }} {{ ctx.size }} {{ ctx.first }}',
  "{{ ctx['item'] }}",
  '{{ "literal" }} {{ 42 }}',
];

for (const source of templates) {
  test(`renders like Liquid: ${JSON.stringify(source)}`, async () => {
    const t = compileTemplate(source, 'test');
    for (const scope of scopes) {
      let expected: string | Error;
      try {
        expected = liquid.parseAndRenderSync(source, scope);
      } catch (err) {
        expected = err as Error;
      }
      if (typeof expected === 'string') {
        assert.equal(await t.render(scope), expected, `scope ${JSON.stringify(scope)}`);
      } else {
        // Where Liquid cannot render (an object without a prototype as the output), neither can herald.
        await assert.rejects(t.render(scope), TemplateError, `scope ${JSON.stringify(scope)}`);
      }
    }
  });
}

test('a broken template fails at compile time with where it is', () => {
  assert.throws(() => compileTemplate('{{ ctx.item ', 'rules.x.inApp.title'), (e: unknown) => e instanceof TemplateError && /rules\.x\.inApp\.title/.test(e.message));
});
