#!/usr/bin/env node
// The CLI runs the TypeScript sources directly: tsx registers a loader, so there is no build step
// for herald nor for the user's herald.config.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
