// A legacy (2025-11-25) MCP server, official TypeScript SDK over streamable HTTP with sessions,
// whose tools ask their client on the session's standalone GET stream, not tied to the call (no
// relatedRequestId), as the conformance suite's reference server does:
//   ask_llm {tag}       sampling/createMessage, answers "<tag>: <the client's text>"
//   ask_user {tag}      elicitation/create, answers "<tag>: <action> <content>"
//   my_roots {tag}      roots/list, answers "<tag>: <uris>"
//   log {tag}           notifications/message at each level on the standalone stream (the SDK
//                       drops those below the session's logging/setLevel), answers "<tag>: logged"
//   sessions {}         how many sessions were initialized (the gateway's pool amortises them)
// The tag travels in the question, and each answer must name it: a question relayed to the wrong
// call is an answer the tool rejects.
//   node standalone_asker.mjs PORT
import http from "node:http";
import { randomUUID } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

const port = Number(process.argv[2] ?? 3000);
let initialized = 0;
const text = (t) => ({ content: [{ type: "text", text: t }] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function buildServer() {
  const mcp = new McpServer({ name: "standalone-asker", version: "1.0.0" }, { capabilities: { logging: {} } });
  const server = mcp.server;
  mcp.registerTool("ask_llm", { description: "Samples on the standalone stream", inputSchema: { tag: z.string() } }, async ({ tag }) => {
    await sleep(20); // let concurrent calls overlap
    const r = await server.createMessage({ messages: [{ role: "user", content: { type: "text", text: tag } }], maxTokens: 20 });
    const said = r.content?.text ?? "";
    if (!said.includes(tag)) return { isError: true, ...text(`${tag}: the answer was for another call: ${said}`) };
    return text(`${tag}: ${said}`);
  });
  mcp.registerTool("ask_user", { description: "Elicits on the standalone stream", inputSchema: { tag: z.string() } }, async ({ tag }) => {
    const r = await server.elicitInput({ message: tag, requestedSchema: { type: "object", properties: { answer: { type: "string" } }, required: ["answer"] } });
    const answer = r.content?.answer ?? "";
    if (r.action === "accept" && !answer.includes(tag)) return { isError: true, ...text(`${tag}: the answer was for another call: ${answer}`) };
    return text(`${tag}: ${r.action} ${answer}`);
  });
  mcp.registerTool("my_roots", { description: "Lists roots on the standalone stream", inputSchema: { tag: z.string() } }, async ({ tag }) => {
    const r = await server.listRoots();
    return text(`${tag}: ${r.roots.map((x) => x.uri).join(",")}`);
  });
  mcp.registerTool("log", { description: "Logs at every level on the standalone stream", inputSchema: { tag: z.string() } }, async ({ tag }, extra) => {
    for (const level of ["debug", "info", "warning", "error"]) {
      await server.sendLoggingMessage({ level, data: `${tag} ${level}` }, extra.sessionId);
    }
    await sleep(100); // the stream carries them before the answer
    return text(`${tag}: logged`);
  });
  mcp.registerTool("sessions", { description: "Sessions initialized so far" }, async () => text(String(initialized)));
  return mcp;
}

const transports = new Map();
const httpServer = http.createServer(async (req, res) => {
  if (!req.url.startsWith("/mcp")) { res.writeHead(404).end(); return; }
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
        onsessioninitialized: (id) => { transports.set(id, transport); initialized += 1; },
      });
      transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
      await buildServer().connect(transport);
    } else {
      res.writeHead(sid ? 404 : 400, { "content-type": "application/json" })
        .end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message: sid ? "Session not found" : "Bad Request: no session" }, id: null }));
      return;
    }
  }
  await transport.handleRequest(req, res, body);
});
httpServer.listen(port, "127.0.0.1", () => console.log(`standalone asker on http://127.0.0.1:${port}/mcp`));
