// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
// The import graph of src/ follows one-way layers, and has no cycle. Every relative import counts:
// static imports, `import type`, `export ... from`, dynamic `import('./x.ts')` and `import('./x.ts')`
// types (a type import is still a dependency of the design). A file may import its own layer or any
// lower one. Parsed with the TypeScript compiler already used for `tsc`, so comments and strings
// never look like imports.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** Top to bottom. A file belongs to the layer one of whose paths (relative to src/) begins its path. */
const LAYERS: { name: string; paths: string[]; why: string }[] = [
  { name: 'entry', paths: ['cli/', 'http/', 'index.ts'], why: 'the ways in (CLI, HTTP API, package exports): nothing in src/ imports them but each other' },
  { name: 'wiring', paths: ['engine.ts', 'config/load-config.ts'], why: 'builds one herald from settings, storage and the compiled config, and injects what lower layers need' },
  { name: 'intake', paths: ['intake/'], why: 'accepting events (emit, group-commit writers): expands them (direct mode) or queues their expansion, and starts runs' },
  { name: 'expansion', paths: ['expansion/'], why: 'an event into its effects: the rules plan it, the channels write inbox rows and queue deliveries; direct mode and the event.expand job share it' },
  { name: 'channels', paths: ['channels/'], why: 'deliveries (in-app, email, WhatsApp, webhooks): carry out what the rules planned' },
  { name: 'rules', paths: ['rules/'], why: 'pure planning (recipients, preferences, templates), compiles rules and workflow declarations' },
  { name: 'workflow', paths: ['workflow/'], why: 'durable runs (executor, notify, QStash protocol): gets events and rules injected, never imports them' },
  { name: 'jobs', paths: ['jobs/'], why: 'the worker (claims, leases, retries, maintenance): runs handlers it is given' },
  { name: 'inbox/metrics', paths: ['inbox/', 'metrics.ts'], why: 'per-user inbox sessions and the metrics registry: thin readers over storage' },
  { name: 'storage', paths: ['storage/'], why: 'all SQL, the drivers and migrations: row shapes are its own, it knows no rule' },
  {
    name: 'base',
    paths: ['config/settings.ts', 'outbound/', 'errors.ts', 'ids.ts', 'log.ts', 'signing.ts'],
    why: 'settings, outbound guard, errors, ids, logging, request signing: leaf utilities anyone may use',
  },
];

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

const walk = (dir: string): string[] =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });

interface Edge {
  from: string;
  to: string;
  line: number;
}

/** The relative module specifiers of a file, with their line numbers. */
function importsOf(file: string, text: string): { spec: string; line: number }[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: { spec: string; line: number }[] = [];
  const add = (node: ts.Node, spec: ts.Node | undefined) => {
    if (spec && ts.isStringLiteralLike(spec) && spec.text.startsWith('.')) {
      found.push({ spec: spec.text, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });
    }
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node, node.moduleSpecifier);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node, node.arguments[0]);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node, node.argument.literal);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node, node.moduleReference.expression);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

const files = walk(SRC).map((p) => relative(SRC, p).split('\\').join('/')).sort();
const fileSet = new Set(files);
const layerOf = (file: string) => LAYERS.findIndex((l) => l.paths.some((p) => file.startsWith(p)));
const layerName = (file: string) => `layer ${layerOf(file) + 1}, ${LAYERS[layerOf(file)]?.name ?? 'none'}`;

const edges: Edge[] = [];
const unresolved: string[] = [];
for (const file of files) {
  for (const { spec, line } of importsOf(file, readFileSync(join(SRC, file), 'utf8'))) {
    const to = relative(SRC, resolve(SRC, dirname(file), spec)).split('\\').join('/');
    if (fileSet.has(to)) edges.push({ from: file, to, line });
    else unresolved.push(`${file}:${line} imports "${spec}", which is not a .ts file under src/`);
  }
}

test('layers: every file under src/ is in exactly one layer', () => {
  assert.ok(files.length > 50, `found only ${files.length} files under ${SRC}`);
  const wrong = files.flatMap((f) => {
    const n = LAYERS.filter((l) => l.paths.some((p) => f.startsWith(p))).length;
    return n === 1 ? [] : [`${f} matches ${n} layers; add it to one in LAYERS (test/house/layers.test.ts)`];
  });
  assert.deepEqual(wrong, []);
});

test('layers: every relative import names a .ts file under src/', () => {
  assert.ok(edges.length > 100, `found only ${edges.length} imports`);
  assert.deepEqual(unresolved, []);
});

test('layers: every import goes to the same layer or a lower one', () => {
  const upward = edges
    .filter((e) => layerOf(e.to) < layerOf(e.from))
    .map((e) => `${e.from}:${e.line} (${layerName(e.from)}) imports ${e.to} (${layerName(e.to)}), a higher layer`);
  assert.deepEqual(upward, []);
});

test('layers: no import cycle between files', () => {
  const out = new Map<string, string[]>(files.map((f) => [f, []]));
  for (const e of edges) if (!out.get(e.from)!.includes(e.to)) out.get(e.from)!.push(e.to);
  assert.deepEqual(cyclesOf(out), []);
});

test('layers: the checker itself sees every import form and a cycle', () => {
  const text = [
    "import a from './a.ts';",
    "import type { B } from '../b.ts';",
    "export { c } from './c.ts';",
    "export * from './d.ts';",
    "const e = await import('./e.ts');",
    "type F = typeof import('./f.ts');",
    "import 'node:fs'; // import('./not-this.ts')",
    "const s = \"import x from './nor-this.ts'\";",
  ].join('\n');
  assert.deepEqual(importsOf('x.ts', text).map((i) => i.spec), ['./a.ts', '../b.ts', './c.ts', './d.ts', './e.ts', './f.ts']);
  const graph = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]);
  assert.deepEqual(cyclesOf(graph), ['a -> b -> c -> a']);
});

/** Every cycle a depth-first search closes (a back edge to a file on the current path), as "a -> b -> a". */
function cyclesOf(out: Map<string, string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const cycles: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    path.push(f);
    for (const to of out.get(f) ?? []) {
      if (state.get(to) === 'open') cycles.push([...path.slice(path.indexOf(to)), to].join(' -> '));
      else if (!state.has(to)) visit(to);
    }
    path.pop();
    state.set(f, 'done');
  };
  for (const f of out.keys()) if (!state.has(f)) visit(f);
  return cycles;
}
