// A stand-in for request-promise (deprecated with request in 2020) for the one call seed 001 makes: it sends
// params.body as is, with params.headers, and resolves to the response body as a string. Like request-promise,
// it rejects when the status is not 2xx. It counts its calls so the driver can tell a cache hit from a fetch.
export const calls = [];

export default async function request(params) {
  calls.push({ method: params.method, url: params.url, body: params.body });
  const res = await fetch(params.url, { method: params.method, headers: params.headers, body: params.body });
  const text = await res.text();
  if (!res.ok) {
    throw new Error(`StatusCodeError: ${res.status} - ${text}`);
  }
  return text;
}
