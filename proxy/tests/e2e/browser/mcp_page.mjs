// The page's MCP client: the official TypeScript SDK (v2, @modelcontextprotocol/client), bundled
// for the browser by esbuild from the npm package (no CDN). window.runMcp(url, era) connects over
// streamable HTTP, lists tools, calls one that reports progress, reads a resource, and returns what
// it saw, or the error that stopped it.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

window.runMcp = async (url, era) => {
  const options = era === "modern" ? { versionNegotiation: { mode: { pin: "2026-07-28" } } } : {};
  const client = new Client({ name: "hangar-browser-page", version: "1.0.0" }, options);
  const transport = new StreamableHTTPClientTransport(new URL(url));
  const out = { era };
  try {
    await client.connect(transport);
    out.protocolVersion = transport.protocolVersion ?? null;
    out.sessionId = transport.sessionId ?? null;
    out.tools = (await client.listTools()).tools.map((t) => t.name);
    const progress = [];
    const called = await client.callTool(
      { name: "fx__slow", arguments: { seconds: 0.3 } },
      { onprogress: (p) => progress.push(p.progress) },
    );
    out.call = called.content?.[0]?.text ?? null;
    out.progress = progress;
    const read = await client.readResource({ uri: "fixture://static" });
    out.resource = read.contents?.[0]?.text ?? null;
    await client.close();
  } catch (e) {
    out.error = String(e?.message ?? e);
  }
  return out;
};
window.mcpReady = true;
