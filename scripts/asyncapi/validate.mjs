// Validates merit's AsyncAPI document with @asyncapi/parser (the AsyncAPI project's own
// parser): exits 1 on any error-level diagnostic, printing each with its path.
// Usage: node validate.mjs ../../docs/asyncapi.json
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Parser, fromFile } from '@asyncapi/parser';

const file = resolve(process.argv[2] ?? '../../docs/asyncapi.json');
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse();
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  const level = ['error', 'warning', 'info', 'hint'][d.severity] ?? d.severity;
  if (d.severity <= 1) console.log(`${level}: ${d.path.join('.')}: ${d.message}`);
}
if (!document || errors.length > 0) {
  console.error(`asyncapi: ${file} is not valid (${errors.length} errors)`);
  process.exit(1);
}
const channels = document.channels().length;
const messages = document.allMessages().length;
console.log(`asyncapi: ${file} is valid AsyncAPI ${document.version()}: ${channels} channels, ${messages} messages`);
JSON.parse(readFileSync(file, 'utf8'));
