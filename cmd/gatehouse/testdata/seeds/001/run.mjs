// Driver for seed 001. Steps, each reported in one JSON line on stdout:
//  1. getAuthToken with an empty table fetches a token and stores it;
//  2. getAuthToken again returns the stored token without a request;
//  3. hasTokenExpired on that token and on EXPIRED_TOKEN (a token whose exp has passed);
//  4. with only EXPIRED_TOKEN in the table, getAuthToken fetches a new token and replaces it.
import AWS from './fake-aws-sdk.mjs';
import { calls } from './fake-request-promise.mjs';
import { getAuthToken, hasTokenExpired } from './cacheToken.mjs';

const table = () => new AWS.DynamoDB.DocumentClient();
const rows = async () => (await table().scan({ TableName: `${process.env.TOKEN_CACHE_DB}` }).promise()).Items.map((r) => r.token);

const first = await getAuthToken();
const requestsAfterFirst = calls.length;
const second = await getAuthToken();
const requestsAfterSecond = calls.length;
const expiredChecks = { fresh: hasTokenExpired(first), expired: hasTokenExpired(process.env.EXPIRED_TOKEN) };

for (const t of await rows()) await table().delete({ TableName: `${process.env.TOKEN_CACHE_DB}`, Key: { token: t } }).promise();
await table().put({ TableName: `${process.env.TOKEN_CACHE_DB}`, Item: { token: process.env.EXPIRED_TOKEN } }).promise();
const renewed = await getAuthToken();

process.stdout.write('RESULT ' + JSON.stringify({
  first, second, requestsAfterFirst, requestsAfterSecond, expiredChecks,
  renewed, requestsAfterRenew: calls.length, tableAfterRenew: await rows(),
  requestBodies: calls.map((c) => c.body),
}) + '\n');
