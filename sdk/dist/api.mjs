// src/api.ts
import createClient from "openapi-fetch";
function createViewPulseClient({ apiKey, headers, ...rest }) {
  const h = new Headers(headers);
  if (apiKey) h.set("Authorization", "Bearer " + apiKey);
  return createClient({ ...rest, headers: h });
}
export {
  createViewPulseClient
};
