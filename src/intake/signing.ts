// Moved to src/signing.ts (issue 25: a pure crypto module belongs in the base layer). This
// re-export stays only until src/http/middleware/shed.ts imports '../../signing.ts'; delete it then.
export * from '../signing.ts';
