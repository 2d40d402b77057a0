// Seed 000 (「M2MのアクセストークンをLambdaでキャッシュする」, 2020): the article's index.js, unchanged except where
// it reads its URL and credentials. The article read CLIENT_ID and CLIENT_SECRET from AWS Secrets Manager and
// hard-coded the Auth0 tenant URL and the audience; here all four come from the environment (CLIENT_ID,
// CLIENT_SECRET, TOKEN_URL, AUDIENCE), so the aws-sdk lines are gone. Everything else is the article's code.
const fetch = require('node-fetch');

const accessToken = undefined;

const newAccessToken = async () => {
    console.log('Get a new access token.');
    // シークレットの取得
    const secret = { CLIENT_ID: process.env.CLIENT_ID, CLIENT_SECRET: process.env.CLIENT_SECRET };

    const url = process.env.TOKEN_URL;
    const headers = { 'Content-Type': 'application/json' };
    const audience = process.env.AUDIENCE;
    const payload = {
        client_id: secret.CLIENT_ID,
        client_secret: secret.CLIENT_SECRET,
        audience,
        grant_type: 'client_credentials'
    };
    const body = JSON.stringify(payload);
    const timestamp = Math.floor(new Date().getTime() / 1000);
    const response = await fetch(url, { method: 'POST', body, headers});
    const result = await response.json();
    this.accessToken = {
        access_token: result.access_token,
        expires_in: timestamp + result.expires_in,
        token_type: result.token_type
    };
    return result.access_token;
};

const getAccessToken = async () => {
    if (!this.accessToken) return await newAccessToken(); // キャッシュ確認
    const timestamp = Math.floor(new Date().getTime() / 1000);
    if (this.accessToken.expires_in < timestamp) return await newAccessToken(); //有効期限確認
    console.log('Use cache access token.');
    return this.accessToken.access_token;
};

exports.handler = async (event) => {
    const result = await getAccessToken();
    return result;
};
