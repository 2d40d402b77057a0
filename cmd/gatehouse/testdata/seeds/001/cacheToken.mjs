// Seed 001 (「Auth0 M2M 토큰을 캐싱하여 $$$ 절약」): the article's cacheToken.ts, as JavaScript so Node runs it without a
// TypeScript compiler (the type annotations are dropped, nothing else). Two imports point at stand-ins, since the
// article's backends are not here: aws-sdk's DynamoDB DocumentClient becomes an in-memory table with the same
// calls (fake-aws-sdk.mjs), and request-promise, deprecated, becomes the same call over fetch
// (fake-request-promise.mjs). The token URL comes from TOKEN_URL instead of the Auth0 tenant name; the credentials
// and audience come from the article's own environment variables.
import AWS from './fake-aws-sdk.mjs';

const storeNewToken = async (token) => {
  const docClient = new AWS.DynamoDB.DocumentClient();
  const response = await docClient.put({ TableName: `${process.env.TOKEN_CACHE_DB}`, Item: { token } }).promise();
  return response;
};

import request from './fake-request-promise.mjs';

export const getAuthToken = async () => {
  const token = await getExistingToken();
  if (token !== '' && hasTokenExpired(token) === false) {
    return token;
  }

  const params = {
    method: 'POST',
    url: process.env.TOKEN_URL,
    headers: { 'content-type': 'application/json' },
    body: `{"client_id":"${process.env.AUTH0_CLIENT_ID}","client_secret":"${process.env.AUTH0_CLIENT_SECRET}","audience":"${process.env.AUTH0_AUDIENCE}","grant_type":"client_credentials"}`,
  };

  const result = JSON.parse(await request(params));
  if (!result["access_token"]) { throw new Error("No Access Token returned"); }

  await deletePreviousTokens(token);
  await storeNewToken(result['access_token']);

  return result["access_token"];
};

import jwt_decode from 'jwt-decode';

const deletePreviousTokens = async (token) => {
  const docClient = new AWS.DynamoDB.DocumentClient();
  const tokenRecords = await getAllTokens();

  // Clear down the table
  if (tokenRecords.Items) {
    tokenRecords.Items.forEach(async (row) => {
      const token = row.token;
      await docClient.delete({ TableName: `${process.env.TOKEN_CACHE_DB}`, Key: { "token": token } }).promise();
    });
  }
};

const hasTokenExpired = (token) => {
  const decoded = jwt_decode(token);
  if (decoded) {
    return decoded.exp < (new Date().getTime() / 1000);
  }

  return false;
};

const getAllTokens = async () => {
  const docClient = new AWS.DynamoDB.DocumentClient();
  const response = await docClient.scan({
    TableName: `${process.env.TOKEN_CACHE_DB}`
  }).promise();

  return response;
};

const getExistingToken = async () => {
  const response = await getAllTokens();

  if (response.Items && response.Items.length > 0) {
    return response.Items[0]['token'];
  }

  return '';
};

// Not in the article: the driver checks the expiry test directly too.
export { hasTokenExpired };
