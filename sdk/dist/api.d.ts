import { type Client, type ClientOptions } from "openapi-fetch";
import type { paths, components } from "./openapi.js";
export type { paths, components };
/** Options of {@link createViewPulseClient}. */
export interface ViewPulseClientOptions extends Omit<ClientOptions, "baseUrl"> {
    /** Base URL of ingest, e.g. "https://views.example.com". */
    baseUrl: string;
    /** An API key of API_KEYS, sent as "Authorization: Bearer <key>". */
    apiKey?: string;
}
/**
 * Returns an openapi-fetch client whose paths, parameters, bodies and answers
 * are typed from the OpenAPI document, e.g.
 * `client.GET("/v1/stages/{stage}/stats", { params: { path: { stage }, query: { days: 7 } } })`.
 * Calls resolve to `{ data }` or `{ error }` (the `{"error":{code,message}}` body); they
 * reject only on network errors.
 */
export declare function createViewPulseClient({ apiKey, headers, ...rest }: ViewPulseClientOptions): Client<paths>;
