// Driver for seed 000: invokes the Lambda handler twice in one process, as a warm Lambda instance would, and
// prints what each call returned and what the seed logged as one JSON line on stdout.
const lines = [];
const log = console.log;
console.log = (...args) => { lines.push(args.join(' ')); log(...args); };

const seed = require('./index.js');

(async () => {
  const tokens = [];
  for (let i = 0; i < 2; i++) {
    tokens.push(await seed.handler({}));
  }
  process.stdout.write('RESULT ' + JSON.stringify({ tokens, logs: lines, cached: seed.accessToken || null }) + '\n');
})().catch((err) => { console.error(err); process.exit(1); });
