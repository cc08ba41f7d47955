// A JavaScript function: run() registers the handler of every request, ServiceWorker style.
run(async (request) => {
  const url = new URL(request.url);
  return new Response(`Hello WASM from JavaScript! ${request.method} ${url.pathname}`, {
    status: 200,
    headers: { "content-type": "text/plain" },
  });
});
