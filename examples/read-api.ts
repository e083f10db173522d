// A website's backend calling the ViewPulse read API with types, through
// @viewpulse/player/api (generated from ingest's /openapi.json). An Express
// site wires it as:
//
//   import express from "express";
//   import { createViewPulseClient } from "@viewpulse/player/api";
//   const vp = createViewPulseClient({ baseUrl: "https://views.example.com", apiKey: process.env.VIEWPULSE_API_KEY });
//   app.get("/stages/:stage/report", async (req, res) => res.json(await stageReport(vp, req.params.stage)));
//
// `npm run typecheck` in sdk/ compiles this file, so the example keeps up with
// the API's types.
import type { Client } from "openapi-fetch";
import { createViewPulseClient, type components, type paths } from "@viewpulse/player/api";

type Session = components["schemas"]["Session"];

export function client(baseUrl: string, apiKey?: string): Client<paths> {
  return createViewPulseClient({ baseUrl, apiKey });
}

/** A stage's last seven days: views, distinct viewers, peak. */
export async function stageReport(vp: Client<paths>, stage: string) {
  const { data, error } = await vp.GET("/v1/stages/{stage}/stats", {
    params: { path: { stage }, query: { days: 7 } },
  });
  if (error) throw new Error(`${error.error.code}: ${error.error.message}`);
  return { views: data.total_views ?? 0, viewers: data.unique_viewers ?? 0, peak: data.peak_viewers ?? 0 };
}

/** Every session of a user, newest first, following the cursor. */
export async function userHistory(vp: Client<paths>, user: string): Promise<Session[]> {
  const all: Session[] = [];
  let cursor: string | undefined;
  do {
    const { data, error } = await vp.GET("/v1/users/{user}/history", {
      params: { path: { user }, query: { limit: 100, cursor } },
    });
    if (error) throw new Error(`${error.error.code}: ${error.error.message}`);
    all.push(...data.sessions);
    cursor = data.next_cursor;
  } while (cursor);
  return all;
}
