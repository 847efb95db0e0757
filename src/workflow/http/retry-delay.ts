import { ValidationError } from '../../errors.ts';

/**
 * `Upstash-Retry-Delay`: an arithmetic expression in milliseconds over `retried` (how many times
 * the message was retried so far), e.g. `pow(2, retried) * 1000` or `max(1000, retried * 5000)`.
 * Parsed once into a function by a small recursive-descent parser: numbers, `retried`, + - * /,
 * parentheses and pow, sqrt, abs, exp, floor, ceil, round, min, max. Nothing is ever eval'd.
 */
const FUNCTIONS: Record<string, (...a: number[]) => number> = {
  pow: Math.pow, sqrt: Math.sqrt, abs: Math.abs, exp: Math.exp, floor: Math.floor, ceil: Math.ceil, round: Math.round,
  min: Math.min, max: Math.max,
};
const MAX_DELAY_MS = 86_400_000;

type Node = (retried: number) => number;

export function parseRetryDelay(expr: string): Node {
  if (expr.length > 200) throw new ValidationError('Upstash-Retry-Delay is too long');
  const tokens = expr.match(/\d+(?:\.\d+)?|[a-z]+|[-+*/(),]|\S/gi) ?? [];
  let i = 0;
  const peek = () => tokens[i];
  const take = (t?: string) => {
    const tok = tokens[i++];
    if (t !== undefined && tok !== t) throw new ValidationError(`Upstash-Retry-Delay: expected "${t}" in "${expr}"`);
    return tok;
  };
  const sum = (): Node => {
    let left = product();
    while (peek() === '+' || peek() === '-') {
      const op = take();
      const l = left;
      const r = product();
      left = op === '+' ? (n) => l(n) + r(n) : (n) => l(n) - r(n);
    }
    return left;
  };
  const product = (): Node => {
    let left = unary();
    while (peek() === '*' || peek() === '/') {
      const op = take();
      const l = left;
      const r = unary();
      left = op === '*' ? (n) => l(n) * r(n) : (n) => l(n) / r(n);
    }
    return left;
  };
  const unary = (): Node => {
    if (peek() === '-') {
      take();
      const v = unary();
      return (n) => -v(n);
    }
    return atom();
  };
  const atom = (): Node => {
    const tok = take();
    if (tok === undefined) throw new ValidationError(`Upstash-Retry-Delay: unexpected end of "${expr}"`);
    if (/^\d/.test(tok)) {
      const v = Number(tok);
      return () => v;
    }
    if (tok === '(') {
      const v = sum();
      take(')');
      return v;
    }
    if (tok === 'retried') return (n) => n;
    const fn = FUNCTIONS[tok];
    if (!fn) throw new ValidationError(`Upstash-Retry-Delay: unknown name "${tok}" (use retried, numbers, + - * / and pow, sqrt, abs, exp, floor, ceil, round, min, max)`);
    take('(');
    const args: Node[] = [sum()];
    while (peek() === ',') {
      take();
      args.push(sum());
    }
    take(')');
    return (n) => fn(...args.map((a) => a(n)));
  };
  const root = sum();
  if (i !== tokens.length) throw new ValidationError(`Upstash-Retry-Delay: unexpected "${tokens[i]}" in "${expr}"`);
  return root;
}

/** The delay before the next retry, in ms, clamped to [0, 1 day]; undefined if not a number. */
export function retryDelayMs(expr: string, retried: number): number | undefined {
  const v = parseRetryDelay(expr)(retried);
  return Number.isFinite(v) ? Math.min(Math.max(Math.round(v), 0), MAX_DELAY_MS) : undefined;
}
