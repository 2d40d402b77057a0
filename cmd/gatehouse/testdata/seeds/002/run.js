// Driver for seed 002: calls the article's Lambda authorizer (auth.js, verbatim) with one API Gateway TOKEN event
// per entry of the JSON object in AUTH_CASES ({name: authorizationToken}), as API Gateway would, and prints one
// JSON line on stdout: for each case the policy returned (or the error thrown) and what the authorizer logged.
const util = require('util');

let logs = [];
for (const level of ['log', 'info', 'warn', 'error']) {
  const orig = console[level];
  console[level] = (...args) => {
    logs.push(util.format(...args));
    orig(...args);
  };
}

const { lambdaHandler } = require('./auth.js');

(async () => {
  const cases = JSON.parse(process.env.AUTH_CASES);
  const results = {};
  for (const [name, authorizationToken] of Object.entries(cases)) {
    logs = [];
    const event = {
      type: 'TOKEN',
      authorizationToken,
      methodArn: 'arn:aws:execute-api:ap-northeast-1:123456789012:abcdef1234/Dev/GET/hello',
    };
    try {
      results[name] = { policy: await lambdaHandler(event), logs };
    } catch (err) {
      results[name] = { error: String(err), logs };
    }
  }
  process.stdout.write('RESULT ' + JSON.stringify(results) + '\n');
})().catch((err) => { console.error(err); process.exit(1); });
