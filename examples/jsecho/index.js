// An echo function in JavaScript, in the ServiceWorker form: it answers with what it was sent.
//
//   GET|POST /anything?x=1   201 for a POST, 200 otherwise: JSON of method, path, query, headers, body
//   GET /status?code=418     that status, with an x-echo-status header
//   GET /wait?ms=5           answers after a timer
//   GET /throw, /reject      an uncaught exception, a rejected promise: the client gets a 500
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  switch (url.pathname) {
    case "/throw":
      throw new Error("jsecho: /throw asked for an exception");
    case "/reject":
      return Promise.reject(new TypeError("jsecho: /reject asked for a rejected promise"));
    case "/status": {
      const code = Number(url.searchParams.get("code") ?? 200);
      return new Response(`status ${code}\n`, { status: code, headers: { "x-echo-status": String(code) } });
    }
    case "/wait": {
      const ms = Number(url.searchParams.get("ms") || 1);
      await new Promise((resolve) => setTimeout(resolve, ms));
      return new Response(`waited ${ms} ms\n`);
    }
  }
  const json = request.headers.get("content-type")?.startsWith("application/json");
  let body = null;
  if (request.body !== null) body = json ? await request.json() : await request.text();
  return Response.json(
    {
      method: request.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: Object.fromEntries(request.headers),
      body,
    },
    { status: request.method === "POST" ? 201 : 200, headers: { "x-echo": "1", "cache-control": "no-store" } },
  );
}
