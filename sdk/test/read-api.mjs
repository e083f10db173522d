// Run by sdk/api_client_test.go against a real ingest: calls the read API
// through @viewpulse/player/api (dist/api.mjs) and prints what it got as JSON.
import { createViewPulseClient } from "../dist/api.mjs";

const baseUrl = process.env.VIEWPULSE_URL;
const stage = process.env.VIEWPULSE_STAGE;
const vp = createViewPulseClient({ baseUrl, apiKey: process.env.VIEWPULSE_API_KEY });

const stats = await vp.GET("/v1/stages/{stage}/stats", { params: { path: { stage }, query: { days: 1 } } });
const history = await vp.GET("/v1/users/{user}/history", { params: { path: { user: process.env.VIEWPULSE_USER }, query: { limit: 1 } } });
const next = await vp.GET("/v1/users/{user}/history", {
  params: { path: { user: process.env.VIEWPULSE_USER }, query: { limit: 1, cursor: history.data?.next_cursor } },
});
const denied = await createViewPulseClient({ baseUrl }).GET("/v1/stages");
console.log(JSON.stringify({
  stats: stats.data, history: history.data, next: next.data,
  denied: { status: denied.response.status, error: denied.error },
}));
