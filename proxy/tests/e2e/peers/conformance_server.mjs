// Conformance fixture: an MCP server (official TypeScript SDK, streamable HTTP, legacy sessions
// with resumable streams) implementing every fixture the @modelcontextprotocol/conformance server
// scenarios expect. MCP Hangar's tests run the suite directly against it and through the gateway
// (with tool_prefix ""), and require the same results.
// With ASK=standalone, the tools that ask the client (sampling, elicitation) ask on the session's
// standalone GET stream, not tied to the call, as the suite's reference server does.
//   node conformance_server.mjs PORT
import http from "node:http";
import { randomUUID } from "node:crypto";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { InMemoryEventStore } from "@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js";
import { completable } from "@modelcontextprotocol/sdk/server/completable.js";
import { isInitializeRequest, ElicitResultSchema, CreateMessageResultSchema, SubscribeRequestSchema, UnsubscribeRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

const port = Number(process.argv[2] ?? 3000);
// 1x1 red PNG and a tiny WAV header.
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEARKwAAIhYAQACABAAZGF0YQAAAAA=";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const STANDALONE = process.env.ASK === "standalone";

function buildServer() {
  const server = new McpServer(
    { name: "hangar-conformance-fixture", version: "1.0.0" },
    { capabilities: { logging: {}, completions: {}, resources: { subscribe: true, listChanged: true }, prompts: { listChanged: true }, tools: { listChanged: true } } },
  );
  const text = (t) => ({ content: [{ type: "text", text: t }] });
  // A question to the client: on the call's stream, or on the standalone one.
  const ask = (extra, request, schema) => (STANDALONE ? server.server.request(request, schema) : extra.sendRequest(request, schema));

  server.registerTool("test_simple_text", { description: "Returns simple text" }, async () => text("This is a simple text response for testing."));
  server.registerTool("test_image_content", { description: "Returns an image" }, async () => ({ content: [{ type: "image", data: PNG, mimeType: "image/png" }] }));
  server.registerTool("test_audio_content", { description: "Returns audio" }, async () => ({ content: [{ type: "audio", data: WAV, mimeType: "audio/wav" }] }));
  server.registerTool("test_embedded_resource", { description: "Returns an embedded resource" }, async () => ({
    content: [{ type: "resource", resource: { uri: "test://embedded-resource", mimeType: "text/plain", text: "This is an embedded resource content." } }],
  }));
  server.registerTool("test_multiple_content_types", { description: "Returns mixed content" }, async () => ({
    content: [
      { type: "text", text: "Multiple content types test:" },
      { type: "image", data: PNG, mimeType: "image/png" },
      { type: "resource", resource: { uri: "test://mixed-content-resource", mimeType: "application/json", text: '{"test":"data","value":123}' } },
    ],
  }));
  server.registerTool("test_tool_with_logging", { description: "Logs while running" }, async (extra) => {
    for (const [i, msg] of ["Tool execution started", "Tool processing data", "Tool execution completed"].entries()) {
      if (i) await sleep(50);
      await extra.sendNotification({ method: "notifications/message", params: { level: "info", data: msg } });
    }
    return text("Tool with logging executed successfully");
  });
  server.registerTool("test_error_handling", { description: "Always fails" }, async () => {
    throw new Error("This tool intentionally returns an error for testing");
  });
  server.registerTool("test_tool_with_progress", { description: "Reports progress" }, async (extra) => {
    const token = extra._meta?.progressToken;
    for (const [i, p] of [0, 50, 100].entries()) {
      if (i) await sleep(50);
      if (token !== undefined) await extra.sendNotification({ method: "notifications/progress", params: { progressToken: token, progress: p, total: 100 } });
    }
    return text("Tool with progress executed successfully");
  });
  server.registerTool("test_sampling", { description: "Asks the client's LLM", inputSchema: { prompt: z.string() } }, async ({ prompt }, extra) => {
    const r = await ask(extra, { method: "sampling/createMessage", params: { messages: [{ role: "user", content: { type: "text", text: prompt } }], maxTokens: 100 } }, CreateMessageResultSchema);
    return text(`LLM response: ${r.content?.text ?? JSON.stringify(r.content)}`);
  });
  server.registerTool("test_elicitation", { description: "Asks the user", inputSchema: { message: z.string() } }, async ({ message }, extra) => {
    const r = await ask(extra, {
      method: "elicitation/create",
      params: { message, requestedSchema: { type: "object", properties: { username: { type: "string", description: "User's response" }, email: { type: "string", description: "User's email address" } }, required: ["username", "email"] } },
    }, ElicitResultSchema);
    return text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
  });
  server.registerTool("test_elicitation_sep1034_defaults", { description: "Elicitation with defaults" }, async (extra) => {
    const r = await ask(extra, {
      method: "elicitation/create",
      params: {
        message: "Please review and update the form fields with defaults",
        requestedSchema: { type: "object", properties: {
          name: { type: "string", description: "User name", default: "John Doe" },
          age: { type: "integer", description: "User age", default: 30 },
          score: { type: "number", description: "User score", default: 95.5 },
          status: { type: "string", description: "User status", enum: ["active", "inactive", "pending"], default: "active" },
          verified: { type: "boolean", description: "Verification status", default: true },
        } },
      },
    }, ElicitResultSchema);
    return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
  });
  server.registerTool("test_elicitation_sep1330_enums", { description: "Elicitation with enums" }, async (extra) => {
    const r = await ask(extra, {
      method: "elicitation/create",
      params: {
        message: "Please select options from the enum fields",
        requestedSchema: { type: "object", properties: {
          untitledSingle: { type: "string", description: "Select one option", enum: ["option1", "option2", "option3"] },
          titledSingle: { type: "string", description: "Select one option with titles", oneOf: [{ const: "value1", title: "First Option" }, { const: "value2", title: "Second Option" }, { const: "value3", title: "Third Option" }] },
          legacyEnum: { type: "string", description: "Select one option (legacy)", enum: ["opt1", "opt2", "opt3"], enumNames: ["Option One", "Option Two", "Option Three"] },
          untitledMulti: { type: "array", description: "Select multiple options", minItems: 1, maxItems: 3, items: { type: "string", enum: ["option1", "option2", "option3"] } },
          titledMulti: { type: "array", description: "Select multiple options with titles", minItems: 1, maxItems: 3, items: { anyOf: [{ const: "value1", title: "First Choice" }, { const: "value2", title: "Second Choice" }, { const: "value3", title: "Third Choice" }] } },
        } },
      },
    }, ElicitResultSchema);
    return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
  });
  server.registerTool("json_schema_2020_12_tool", { description: "Tool with JSON Schema 2020-12 features", inputSchema: { name: z.string().optional() } }, async () => text("ok"));
  server.registerTool("test_reconnection", { description: "Closes the SSE stream mid-call" }, async (extra) => {
    await sleep(100);
    extra.closeSSEStream?.();
    await sleep(300);
    return text("Reconnection test completed successfully");
  });

  server.registerResource("static-text", "test://static-text", { description: "A static text resource", mimeType: "text/plain" }, async () => ({
    contents: [{ uri: "test://static-text", mimeType: "text/plain", text: "This is the content of the static text resource." }],
  }));
  server.registerResource("static-binary", "test://static-binary", { description: "A static binary resource", mimeType: "image/png" }, async () => ({
    contents: [{ uri: "test://static-binary", mimeType: "image/png", blob: PNG }],
  }));
  server.registerResource("watched-resource", "test://watched-resource", { description: "A resource to subscribe to", mimeType: "text/plain" }, async () => ({
    contents: [{ uri: "test://watched-resource", mimeType: "text/plain", text: "Watched resource content" }],
  }));
  server.registerResource("template", new ResourceTemplate("test://template/{id}/data", { list: undefined }), { description: "A template", mimeType: "application/json" }, async (uri, { id }) => ({
    contents: [{ uri: uri.href, mimeType: "application/json", text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }],
  }));

  server.registerPrompt("test_simple_prompt", { description: "A simple prompt" }, async () => ({
    messages: [{ role: "user", content: { type: "text", text: "This is a simple prompt for testing." } }],
  }));
  server.registerPrompt("test_prompt_with_arguments", { description: "A prompt with arguments", argsSchema: {
    arg1: completable(z.string().describe("First test argument"), (v) => ["paris", "park", "party"].filter((x) => x.startsWith(v ?? ""))),
    arg2: z.string().describe("Second test argument"),
  } }, async ({ arg1, arg2 }) => ({
    messages: [{ role: "user", content: { type: "text", text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }],
  }));
  server.registerPrompt("test_prompt_with_embedded_resource", { description: "A prompt with an embedded resource", argsSchema: { resourceUri: z.string() } }, async ({ resourceUri }) => ({
    messages: [
      { role: "user", content: { type: "resource", resource: { uri: resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." } } },
      { role: "user", content: { type: "text", text: "Please process the embedded resource above." } },
    ],
  }));
  server.registerPrompt("test_prompt_with_image", { description: "A prompt with an image" }, async () => ({
    messages: [
      { role: "user", content: { type: "image", data: PNG, mimeType: "image/png" } },
      { role: "user", content: { type: "text", text: "Please analyze the image above." } },
    ],
  }));
  const subscribed = new Set();
  server.server.setRequestHandler(SubscribeRequestSchema, async (r) => {
    subscribed.add(r.params.uri);
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, async (r) => {
    subscribed.delete(r.params.uri);
    return {};
  });
  return server;
}

// The JSON Schema 2020-12 scenario needs the raw schema exactly; patch the listed tool.
const SCHEMA_2020 = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  $defs: { address: { type: "object", properties: { street: { type: "string" }, city: { type: "string" } } } },
  properties: { name: { type: "string" }, address: { $ref: "#/$defs/address" } },
  additionalProperties: false,
};

const transports = new Map();
const httpServer = http.createServer(async (req, res) => {
  if (!req.url.startsWith("/mcp")) { res.writeHead(404).end(); return; }
  const host = (req.headers.host ?? "").replace(/:\d+$/, "");
  if (!["localhost", "127.0.0.1", "[::1]"].includes(host)) { res.writeHead(403).end("Forbidden: Host not allowed"); return; }
  const origin = req.headers.origin;
  if (origin && !/^https?:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/.test(origin)) { res.writeHead(403).end("Forbidden: Origin not allowed"); return; }
  let body;
  if (req.method === "POST") {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    try { body = JSON.parse(Buffer.concat(chunks).toString() || "null"); } catch { res.writeHead(400).end(); return; }
  }
  const sid = req.headers["mcp-session-id"];
  let transport = sid ? transports.get(sid) : undefined;
  if (!transport) {
    if (req.method === "POST" && !sid && isInitializeRequest(body)) {
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        eventStore: new InMemoryEventStore(),
        retryInterval: 500,
        onsessioninitialized: (id) => transports.set(id, transport),
      });
      transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
      const server = buildServer();
      const origList = server.server._requestHandlers.get("tools/list");
      server.server._requestHandlers.set("tools/list", async (r, extra) => {
        const out = await origList(r, extra);
        for (const t of out.tools) if (t.name === "json_schema_2020_12_tool") t.inputSchema = SCHEMA_2020;
        return out;
      });
      await server.connect(transport);
    } else {
      res.writeHead(sid ? 404 : 400, { "content-type": "application/json" })
        .end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message: sid ? "Session not found" : "Bad Request: no session" }, id: null }));
      return;
    }
  }
  await transport.handleRequest(req, res, body);
});
httpServer.listen(port, "127.0.0.1", () => console.log(`conformance fixture on http://127.0.0.1:${port}/mcp`));
